-- Everything the estimator and the status views need, read atomically. Changes nothing.
local o = office()
if o == nil then return no_office() end
local services, lines, history = {}, {}, {}
for _, sid in ipairs(redis.call('SMEMBERS', P .. 'services')) do
  services[#services + 1] = service(sid)
  local line = {}
  for _, kind in ipairs({'appt', 'priority', 'regular'}) do
    line[kind] = redis.call('ZRANGE', P .. 'q:' .. sid .. ':' .. kind, 0, -1, 'WITHSCORES')
  end
  lines[sid] = line
  history[sid] = redis.call('LRANGE', P .. 'svc:' .. sid .. ':times', 0, -1)
end
local counters = {}
for _, cid in ipairs(redis.call('SMEMBERS', P .. 'counters')) do
  local c = counter(cid)
  if c.current ~= '' then c.ticket = ticket(c.current) end
  counters[#counters + 1] = c
end
local last = redis.call('XREVRANGE', P .. 'events', '+', '-', 'COUNT', 1)
local last_id = ''
if last[1] ~= nil then last_id = last[1][1] end
return cjson.encode({office = o, services = services, lines = lines, history = history,
  counters = counters, day = hgetall(P .. 'day:' .. DAY), last_event = last_id})
