-- Create or update a service. ARGV[4]: JSON of its fields (id, prefix, mode, names, ...).
local o = office()
if o == nil then return no_office() end
local fields = cjson.decode(ARGV[4])
local sid = fields.id
for _, other in ipairs(redis.call('SMEMBERS', P .. 'services')) do
  if other ~= sid and redis.call('HGET', P .. 'service:' .. other, 'prefix') == fields.prefix then
    return fail('conflict', 'prefix "' .. fields.prefix .. '" is already used by service "' .. other .. '"')
  end
end
local existing = service(sid)
local flat = {}
for k, v in pairs(fields) do
  flat[#flat + 1] = k
  flat[#flat + 1] = tostring(v)
end
redis.call('HSET', P .. 'service:' .. sid, unpack(flat))
redis.call('SADD', P .. 'services', sid)
local kind = 'service_updated'
if existing == nil then kind = 'service_created' end
local id = emit(o, {type = kind, service = sid})
return cjson.encode({ok = true, event = id, service = service(sid)})
