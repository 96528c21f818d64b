-- Create or update an office. ARGV[4]: JSON of its settings.
local fields = cjson.decode(ARGV[4])
local existing = office()
local flat = {}
for k, v in pairs(fields) do
  flat[#flat + 1] = k
  flat[#flat + 1] = tostring(v)
end
redis.call('HSET', KEYS[1], unpack(flat))
local o = office()
local kind = 'office_updated'
if existing == nil then kind = 'office_created' end
local id = emit(o, {type = kind})
return cjson.encode({ok = true, event = id, office = o})
