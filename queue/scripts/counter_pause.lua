-- Pause an open counter: it calls no one until it is opened again. ARGV[4] counter id.
local o = office()
if o == nil then return no_office() end
local cid = ARGV[4]
local c = counter(cid)
if c == nil then return fail('not_found', 'counter "' .. cid .. '" does not exist at office "' .. o.id .. '"') end
if c.state ~= 'open' then return fail('wrong_state', 'counter "' .. cid .. '" is ' .. c.state .. ', not open') end
redis.call('HSET', P .. 'counter:' .. cid, 'state', 'paused')
local event = emit(o, {type = 'counter_paused', counter = cid})
return cjson.encode({ok = true, event = event, counter = counter(cid)})
