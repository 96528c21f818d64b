-- Send a ticket to another service; it keeps its place by original issue time.
-- ARGV[4] ticket ref, ARGV[5] target service.
local o = office()
if o == nil then return no_office() end
local t, err = need_ticket(o, {'waiting', 'called', 'serving'})
if err then return err end
local to = ARGV[5]
if to == t.service then
  return fail('invalid', 'ticket ' .. t.number .. ' is already in service "' .. to .. '"')
end
local s = service(to)
if s == nil then return fail('not_found', 'service "' .. to .. '" does not exist at office "' .. o.id .. '"') end
if s.active ~= '1' then return fail('unavailable', 'service "' .. to .. '" is not taking tickets now') end
if s.mode == 'remote' or service(t.service).mode == 'remote' then
  return fail('invalid', 'a remote consultation is transferred within its call, not at a counter')
end
local from = t.service
if t.status == 'waiting' then leave_line(t) else free_counter(t) end
set_status(t, 'waiting', {service = to, counter = '', called_at = '', started_at = '',
  waiting_since = NOW_S, transfers = tostring(tonumber(t.transfers) + 1)})
local key, score = line_of(t)
redis.call('ZADD', key, score, t.id)
local event = emit(o, {type = 'transferred', ticket = t.id, number = t.number, service = to,
  from_service = from})
return ok(o, t, event)
