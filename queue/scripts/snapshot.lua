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
-- Specialists present for remote services (consult/presence.py keeps the hash): each
-- "username" -> "services until"; one whose presence lapsed is not there.
local desks = {}
local present = redis.call('HGETALL', P .. 'desks')
for i = 1, #present, 2 do
  local who, csv, untl = present[i], string.match(present[i + 1], '^(%S*) (%S+)$')
  if csv ~= nil and tonumber(untl) ~= nil and tonumber(untl) > NOW then
    local d = {id = 'desk:' .. who, name = who, state = 'open', services = csv, current = ''}
    local held = redis.call('GET', P .. 'specialist-call:' .. who)
    if held then
      local t = ticket(held)
      if t ~= nil and (t.status == 'called' or t.status == 'serving') then
        d.current = held
        d.ticket = t
      end
    end
    desks[#desks + 1] = d
  end
end
local last = redis.call('XREVRANGE', P .. 'events', '+', '-', 'COUNT', 1)
local last_id = ''
if last[1] ~= nil then last_id = last[1][1] end
return cjson.encode({office = o, services = services, lines = lines, history = history,
  counters = counters, desks = desks, day = hgetall(P .. 'day:' .. DAY), last_event = last_id})
