-- Create a counter, or change its name and the services it serves, leaving its
-- state as it is (a new counter starts closed). ARGV[4] counter id, ARGV[5]
-- services "a,b" (at least one), ARGV[6] display name or "" to keep it, ARGV[7]
-- "new" (refuse an existing counter), "existing" (refuse a missing one) or "".
local o = office()
if o == nil then return no_office() end
local cid, csv, name, must = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local c = counter(cid)
if must == 'new' and c ~= nil then
  return fail('conflict', 'counter "' .. cid .. '" already exists at office "' .. o.id .. '"')
end
if must == 'existing' and c == nil then
  return fail('not_found', 'counter "' .. cid .. '" does not exist at office "' .. o.id .. '"')
end
local wanted = split(csv)
if #wanted == 0 then
  return fail('invalid', 'counter "' .. cid .. '" needs at least one service')
end
for _, sid in ipairs(wanted) do
  local s = service(sid)
  if s == nil then
    return fail('not_found', 'service "' .. sid .. '" does not exist at office "' .. o.id .. '"')
  end
  if s.mode == 'remote' then
    return fail('invalid', 'service "' .. sid .. '" is a remote consultation: specialists take it, not counters')
  end
end
local key = P .. 'counter:' .. cid
local kind = 'counter_updated'
if c == nil then
  kind = 'counter_created'
  if name == '' then name = cid end
  redis.call('HSET', key, 'id', cid, 'current', '', 'pstreak', '0', 'state', 'closed', 'name', name)
  redis.call('SADD', P .. 'counters', cid)
elseif name ~= '' then
  redis.call('HSET', key, 'name', name)
end
redis.call('HSET', key, 'services', table.concat(wanted, ','))
local event = emit(o, {type = kind, counter = cid, services = table.concat(wanted, ',')})
return cjson.encode({ok = true, event = event, counter = counter(cid)})
