-- The specialist invites a third participant (an interpreter, a second specialist), who
-- may then join. ARGV[4] ticket id, [5] the specialist's user name, [6] the invited one's.
local o = office()
if o == nil then return no_office() end
local c, err = need_call({ringing = true, connected = true, reconnecting = true})
if err then return err end
if c.specialist ~= ARGV[5] then
  return fail('forbidden', 'only the specialist in consultation ' .. c.number .. ' may invite')
end
if ARGV[6] == c.specialist then
  return fail('invalid', '"' .. ARGV[6] .. '" is the specialist of consultation ' .. c.number)
end
save(c, {guest = ARGV[6], guest_conn = ''})
redis.call('SET', P .. 'guest-call:' .. ARGV[6], c.ticket, 'EX', tonumber(o.ticket_ttl))
emit(o, {type = 'consult_invited', call = call_id(c), ticket = c.ticket, number = c.number,
  service = c.service, specialist = c.specialist, guest = ARGV[6]})
tell(c, state_message(c))
return call_ok(c)
