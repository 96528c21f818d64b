-- A participant's signaling connection closed. ARGV[4] ticket id, [5] role, [6] the
-- connection's id (a connection that was replaced changes nothing), [7] seconds to
-- wait for the kiosk or the specialist to come back.
local o = office()
if o == nil then return no_office() end
local c, err = need_call({waiting = true, ringing = true, connected = true, reconnecting = true,
  ended = true})
if err then return err end
local role, conn, grace = ARGV[5], ARGV[6], tonumber(ARGV[7])
if not ROLES[role] or c.state == 'ended' or c[role .. '_conn'] ~= conn then
  return call_ok(c, {changed = false})
end
save(c, {[role .. '_conn'] = ''})
tell(c, {type = 'left', role = role})
if c.state == 'connected' and role ~= 'guest' then
  due(c, NOW + grace)
  move(o, c, 'reconnecting', role .. '_left')
elseif c.state == 'waiting' and role == 'kiosk' then
  due(c, NOW + grace)
  tell(c, state_message(c))
else
  tell(c, state_message(c))
end
return call_ok(c, {changed = true})
