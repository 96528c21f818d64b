-- Remove a service. Refused while any ticket waits in it, a counter holds one of
-- its tickets, or a counter serves it: deactivate it instead (an inactive service
-- takes no new tickets, and the ones already waiting are still served).
-- ARGV[4] service id.
local o = office()
if o == nil then return no_office() end
local sid = ARGV[4]
local s = service(sid)
if s == nil then
  return fail('not_found', 'service "' .. sid .. '" does not exist at office "' .. o.id .. '"')
end
local waiting = 0
for _, kind in ipairs({'appt', 'priority', 'regular'}) do
  waiting = waiting + redis.call('ZCARD', P .. 'q:' .. sid .. ':' .. kind)
end
if waiting > 0 then
  return fail('busy', 'service "' .. sid .. '" still has ' .. waiting ..
    ' waiting ticket(s): deactivate it instead, so that it takes no new tickets')
end
for _, cid in ipairs(redis.call('SMEMBERS', P .. 'counters')) do
  local c = counter(cid)
  if c.current ~= '' then
    local held = ticket(c.current)
    if held ~= nil and held.service == sid and not CLOSED[held.status] then
      return fail('busy', 'counter "' .. cid .. '" holds ticket ' .. held.number ..
        ' of service "' .. sid .. '": deactivate the service instead')
    end
  end
  for _, served in ipairs(split(c.services)) do
    if served == sid then
      return fail('busy', 'counter "' .. cid .. '" serves "' .. sid ..
        '": take the service off that counter first, or deactivate the service instead')
    end
  end
end
redis.call('DEL', P .. 'service:' .. sid, P .. 'svc:' .. sid .. ':times')
redis.call('SREM', P .. 'services', sid)
local event = emit(o, {type = 'service_deleted', service = sid})
return cjson.encode({ok = true, event = event, service = s})
