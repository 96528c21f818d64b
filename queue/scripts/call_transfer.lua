-- The specialist transfers the consultation to another remote service: the call goes
-- back to the queue there, and the resident keeps their place by original issue time.
-- ARGV[4] ticket id, [5] the specialist's user name, [6] the service, [7] seconds to
-- wait for a kiosk that is gone.
local o = office()
if o == nil then return no_office() end
local c, err = need_call({ringing = true, connected = true, reconnecting = true})
if err then return err end
if c.specialist ~= ARGV[5] then
  return fail('forbidden', 'only the specialist in consultation ' .. c.number .. ' may transfer it')
end
local to = ARGV[6]
if to == c.service then
  return fail('invalid', 'consultation ' .. c.number .. ' is already about "' .. to .. '"')
end
local s = service(to)
if s == nil then
  return fail('not_found', 'service "' .. to .. '" does not exist at office "' .. o.id .. '"')
end
if s.mode ~= 'remote' then return fail('invalid', 'service "' .. to .. '" is not a remote consultation') end
if s.active ~= '1' then return fail('unavailable', 'service "' .. to .. '" is not taking tickets now') end
local t = ticket(c.ticket)
local from = t.service
talk_stop(c)
set_status(t, 'waiting', {service = to, counter = '', called_at = '', started_at = '',
  waiting_since = NOW_S, transfers = tostring(tonumber(t.transfers) + 1)})
local key, score = line_of(t)
redis.call('ZADD', key, score, t.id)
emit(o, {type = 'transferred', ticket = t.id, number = t.number, service = to,
  from_service = from, call = call_id(c)})
save(c, {service = to, transfer = to, transfers = tostring(tonumber(c.transfers) + 1),
  specialist = '', specialist_conn = '', guest = '', guest_conn = ''})
if c.kiosk_conn == '' then due(c, NOW + tonumber(ARGV[7])) else due(c, nil) end
move(o, c, 'waiting', 'transferred')
return call_ok(c)
