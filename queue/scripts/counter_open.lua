-- Open a counter (creating it on first use), resume a paused one, or change the
-- services an open one serves. ARGV[4] counter id, ARGV[5] services "a,b" or ""
-- to keep the ones it has, ARGV[6] display name or "".
local o = office()
if o == nil then return no_office() end
local cid, csv, name = ARGV[4], ARGV[5], ARGV[6]
local c = counter(cid)
if csv == '' then
  if c == nil or c.services == '' then
    return fail('invalid', 'counter "' .. cid .. '" needs at least one service to open')
  end
  csv = c.services
end
for _, sid in ipairs(split(csv)) do
  local s = service(sid)
  if s == nil then
    return fail('not_found', 'service "' .. sid .. '" does not exist at office "' .. o.id .. '"')
  end
  if s.mode == 'remote' then
    return fail('invalid', 'service "' .. sid .. '" is a remote consultation: specialists take it, not counters')
  end
end
local key = P .. 'counter:' .. cid
if c == nil then
  redis.call('HSET', key, 'id', cid, 'current', '', 'pstreak', '0', 'name', cid)
  redis.call('SADD', P .. 'counters', cid)
end
if name ~= '' then redis.call('HSET', key, 'name', name) end
local was = (c and c.state) or 'closed'
redis.call('HSET', key, 'state', 'open', 'services', csv)
local kind = 'counter_opened'
if was == 'open' then kind = 'counter_changed' end
local event = emit(o, {type = kind, counter = cid, services = csv})
return cjson.encode({ok = true, event = event, counter = counter(cid)})
