-- A participant ends the call. ARGV[4] ticket id, [5] role ("kiosk", "specialist" or
-- "guest"), [6] the kiosk id or user name, [7] seconds to wait for a kiosk that is gone.
-- The kiosk ends it for good (before it connected: "cancelled"); the specialist ends it
-- ("completed"), or while it rings declines it (the resident goes back to the front);
-- the invited person only leaves.
local o = office()
if o == nil then return no_office() end
local c, err = need_call({waiting = true, ringing = true, connected = true, reconnecting = true})
if err then return err end
local role, who = ARGV[5], ARGV[6]
local t = ticket(c.ticket)
if role == 'kiosk' and c.kiosk == who then
  local reason = 'completed'
  if c.connected_at == '' then reason = 'cancelled' end
  end_call(o, c, t, reason)
elseif role == 'specialist' and c.state ~= 'waiting' and c.specialist == who then
  if c.state == 'ringing' then
    requeue(o, c, t, 'declined', tonumber(ARGV[7]))
  else
    end_call(o, c, t, 'completed')
  end
elseif role == 'guest' and c.state ~= 'waiting' and c.guest == who then
  save(c, {guest = '', guest_conn = ''})
  tell(c, {type = 'left', role = 'guest'})
  tell(c, state_message(c))
else
  return fail('forbidden', 'you are not a participant of consultation ' .. c.number)
end
return call_ok(c)
