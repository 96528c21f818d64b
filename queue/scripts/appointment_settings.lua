-- Set a service's appointment slots. ARGV[4] service id, ARGV[5] JSON of the settings
-- (minutes, capacity, hours, days_ahead, before, after, enabled). Bumps "version", so
-- that a booking computed from the settings before this change is refused.
local o = office()
if o == nil then return no_office() end
local sid = ARGV[4]
if service(sid) == nil then
  return fail('not_found', 'service "' .. sid .. '" does not exist at office "' .. o.id .. '"')
end
local key = P .. 'slots:' .. sid
local flat = {'service', sid}
for k, v in pairs(cjson.decode(ARGV[5])) do
  flat[#flat + 1] = k
  flat[#flat + 1] = tostring(v)
end
redis.call('HSET', key, unpack(flat))
redis.call('HINCRBY', key, 'version', 1)
local event = emit(o, {type = 'slots_updated', service = sid})
return cjson.encode({ok = true, event = event, settings = hgetall(key)})
