-- Pause an open counter: it calls no one until it is opened again. ARGV[4] counter id.
local o = office()
if o == nil then return no_office() end
local c, err = need_counter(o, {'open'})
if err then return err end
local cid = c.id
redis.call('HSET', P .. 'counter:' .. cid, 'state', 'paused')
local event = emit(o, {type = 'counter_paused', counter = cid})
return cjson.encode({ok = true, event = event, counter = counter(cid)})
