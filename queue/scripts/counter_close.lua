-- Close a counter. It must not hold a ticket. ARGV[4] counter id.
local o = office()
if o == nil then return no_office() end
local c, err = need_counter(o, {'open', 'paused', 'closed'})
if err then return err end
local cid = c.id
if c.state == 'closed' then return fail('wrong_state', 'counter "' .. cid .. '" is already closed') end
err = holding(c)
if err then return err end
redis.call('HSET', P .. 'counter:' .. cid, 'state', 'closed', 'pstreak', '0')
local event = emit(o, {type = 'counter_closed', counter = cid})
return cjson.encode({ok = true, event = event, counter = counter(cid)})
