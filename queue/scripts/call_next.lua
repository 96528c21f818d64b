-- A counter calls its next ticket. ARGV[4] counter id.
-- Routing: due appointments first, then priority tickets (at most priority_cap in
-- a row while regular tickets wait), then the longest-waiting regular ticket,
-- across every service the counter serves.
local o = office()
if o == nil then return no_office() end
local c, err = need_counter(o, {'open'})
if err then return err end
local cid = c.id
err = holding(c)
if err then return err end
local function head(kind, limit)
  local best_id, best_score = nil, nil
  for _, sid in ipairs(split(c.services)) do
    local r = redis.call('ZRANGE', P .. 'q:' .. sid .. ':' .. kind, 0, 0, 'WITHSCORES')
    if r[1] ~= nil then
      local score = tonumber(r[2])
      if (limit == nil or score <= limit) and
         (best_id == nil or score < best_score or (score == best_score and r[1] < best_id)) then
        best_id, best_score = r[1], score
      end
    end
  end
  return best_id
end
local streak = tonumber(c.pstreak or '0')
local chosen = head('appt', NOW + tonumber(o.appt_early))
if chosen == nil then
  local pri = head('priority', nil)
  local reg = head('regular', nil)
  if pri ~= nil and (reg == nil or streak < tonumber(o.priority_cap)) then
    chosen = pri
    streak = streak + 1
  elseif reg ~= nil then
    chosen = reg
    streak = 0
  end
end
if chosen == nil then return cjson.encode({ok = true, ticket = cjson.null}) end
local t = ticket(chosen)
leave_line(t)
set_status(t, 'called', {called_at = NOW_S, counter = cid})
redis.call('HSET', P .. 'counter:' .. cid, 'current', t.id, 'pstreak', streak)
learn('called:' .. t.service, 1)
local event = emit(o, {type = 'called', ticket = t.id, number = t.number, service = t.service,
  counter = cid, waited = tostring(NOW - tonumber(t.issued_at))})
return ok(o, t, event)
