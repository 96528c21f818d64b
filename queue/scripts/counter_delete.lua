-- Remove a counter. Only a closed counter can go: an open or paused one may be
-- about to call, or still hold, a ticket. ARGV[4] counter id.
local o = office()
if o == nil then return no_office() end
local c, err = need_counter(o, {'closed'})
if err then return err end
err = holding(c)
if err then return err end
redis.call('DEL', P .. 'counter:' .. c.id)
redis.call('SREM', P .. 'counters', c.id)
local event = emit(o, {type = 'counter_deleted', counter = c.id})
return cjson.encode({ok = true, event = event, counter = c})
