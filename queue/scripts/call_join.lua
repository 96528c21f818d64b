-- A participant's signaling connection joins the call. ARGV[4] ticket id, [5] "kiosk" or
-- "staff", [6] the kiosk id or user name, [7] the connection's id. Only the kiosk that
-- raised the consultation, the specialist who accepted it and the one person they
-- invited may join. Both ends present: the call is connected.
local o = office()
if o == nil then return no_office() end
local c, err = need_call({waiting = true, ringing = true, connected = true, reconnecting = true})
if err then return err end
local kind, who, conn = ARGV[5], ARGV[6], ARGV[7]
local role = nil
if kind == 'kiosk' and c.kiosk == who then
  role = 'kiosk'
elseif kind == 'staff' and c.state ~= 'waiting' and c.specialist == who then
  role = 'specialist'
elseif kind == 'staff' and c.state ~= 'waiting' and c.guest == who then
  role = 'guest'
end
if role == nil then
  return fail('forbidden', 'you are not a participant of consultation ' .. c.number)
end
local before = c[role .. '_conn']
save(c, {[role .. '_conn'] = conn})
if before ~= '' and before ~= conn then
  tell(c, {type = 'replaced'}, before)
end
tell(c, {type = 'joined', role = role})
if (c.state == 'ringing' or c.state == 'reconnecting') and c.kiosk_conn ~= '' and
    c.specialist_conn ~= '' then
  local t = ticket(c.ticket)
  if c.connected_at == '' then
    save(c, {connected_at = NOW_S, waited = tostring(NOW - tonumber(c.issued_at))})
    if t ~= nil and t.status == 'called' then serve_ticket(o, t, c) end
  end
  if c.talk_since == '' then save(c, {talk_since = NOW_S}) end
  due(c, nil)
  move(o, c, 'connected', role .. '_joined')
elseif c.state == 'waiting' and role == 'kiosk' then
  due(c, nil)
  tell(c, state_message(c))
else
  tell(c, state_message(c))
end
return call_ok(c, {role = role})
