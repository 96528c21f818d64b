-- Close a counter. It must not hold a ticket. ARGV[4] counter id.
local o = office()
if o == nil then return no_office() end
local cid = ARGV[4]
local c = counter(cid)
if c == nil then return fail('not_found', 'counter "' .. cid .. '" does not exist at office "' .. o.id .. '"') end
if c.state == 'closed' then return fail('wrong_state', 'counter "' .. cid .. '" is already closed') end
if c.current ~= '' then
  local held = ticket(c.current)
  return fail('busy', 'counter "' .. cid .. '" still has ticket ' .. held.number .. ' (' .. held.status ..
    '): finish it, mark it a no-show or transfer it first')
end
redis.call('HSET', P .. 'counter:' .. cid, 'state', 'closed', 'pstreak', '0')
local event = emit(o, {type = 'counter_closed', counter = cid})
return cjson.encode({ok = true, event = event, counter = counter(cid)})
