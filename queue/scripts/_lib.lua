-- Shared helpers, prepended to every queue script when it is loaded.
-- KEYS[1] is always the office's hash "mg:{<office>}:office"; every other key the
-- scripts touch is built from the same prefix, so it carries the same hash tag and
-- lives on the same Redis Cluster slot. ARGV[1] is always "now" (seconds, given by
-- the caller: scripts never read the server clock), ARGV[2] the actor, ARGV[3] the
-- office's local date (YYYY-MM-DD) at "now".
local P = string.sub(KEYS[1], 1, -7)
local NOW_S = ARGV[1]
local NOW = tonumber(NOW_S)
local ACTOR = ARGV[2]
local DAY = ARGV[3]
local CLOSED = {done = true, no_show = true, cancelled = true, abandoned = true}

local function hgetall(key)
  local flat = redis.call('HGETALL', key)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

local function fail(code, message)
  return cjson.encode({error = {code = code, message = message}})
end

local function split(csv)
  local out = {}
  for item in string.gmatch(csv or '', '[^,]+') do out[#out + 1] = item end
  return out
end

local function office()
  local o = hgetall(KEYS[1])
  if o.id == nil then return nil end
  return o
end

local function service(sid)
  local s = hgetall(P .. 'service:' .. sid)
  if s.id == nil then return nil end
  return s
end

local function ticket(id)
  local t = hgetall(P .. 'ticket:' .. id)
  if t.id == nil then return nil end
  return t
end

-- A ticket reference is "id:<ticket id>" or "token:<resident token>".
local function resolve(ref)
  local kind, value = string.match(ref, '^(%a+):(.+)$')
  if kind == 'id' then return ticket(value) end
  if kind == 'token' then
    local id = redis.call('GET', P .. 'tok:' .. value)
    if id then return ticket(id) end
  end
  return nil
end

local function counter(cid)
  local c = hgetall(P .. 'counter:' .. cid)
  if c.id == nil then return nil end
  return c
end

-- The waiting line a ticket belongs in, and its score there.
local function line_of(t)
  local base = P .. 'q:' .. t.service .. ':'
  if t.appt ~= '' then return base .. 'appt', t.appt end
  if t.priority == '1' then return base .. 'priority', t.sort end
  return base .. 'regular', t.sort
end

local function emit(o, event)
  event.t = NOW_S
  event.actor = ACTOR
  event.office = o.id
  local body = cjson.encode(event)
  local id = redis.call('XADD', P .. 'events', 'MAXLEN', '~', o.stream_maxlen, '*', 'e', body)
  redis.call('PUBLISH', P .. 'live', id .. ' ' .. body)
  return id
end

local function learn(field, amount)
  local key = P .. 'day:' .. DAY
  redis.call('HINCRBYFLOAT', key, field, amount)
  redis.call('EXPIRE', key, 8 * 86400)
end

-- Position in its own service's line: due appointments first, then priority
-- tickets, then the regular line by original issue time. 0 once it is not waiting.
local function position(o, t)
  if t.status ~= 'waiting' then return 0 end
  local base = P .. 'q:' .. t.service .. ':'
  local key = line_of(t)
  local rank = redis.call('ZRANK', key, t.id)
  if rank == false then return 0 end
  if t.appt ~= '' then return rank + 1 end
  local due = redis.call('ZCOUNT', base .. 'appt', '-inf', NOW + tonumber(o.appt_early))
  if t.priority == '1' then return due + rank + 1 end
  return due + redis.call('ZCARD', base .. 'priority') + rank + 1
end

-- Take a ticket out of the waiting line and account for the time it waited.
local function leave_line(t)
  local key = line_of(t)
  redis.call('ZREM', key, t.id)
  learn('exposure', NOW - tonumber(t.waiting_since))
end

local function set_status(t, status, extra)
  t.status = status
  local flat = {'status', status}
  for k, v in pairs(extra or {}) do
    t[k] = v
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  redis.call('HSET', P .. 'ticket:' .. t.id, unpack(flat))
end

-- A closed ticket stays readable by its token for a while, then goes; its
-- contact details go at once.
local function close_ticket(o, t)
  local ttl = tonumber(o.ticket_ttl)
  redis.call('EXPIRE', P .. 'ticket:' .. t.id, ttl)
  redis.call('EXPIRE', P .. 'tok:' .. t.token, ttl)
  redis.call('DEL', P .. 'contact:' .. t.id)
end

-- The ticket's service is over: it closes as done, the service time joins the
-- service's history (from which the estimator learns), and the stream hears of it.
local function finish_ticket(o, t, counter, call)
  set_status(t, 'done', {finished_at = NOW_S})
  close_ticket(o, t)
  local took = NOW - tonumber(t.started_at)
  local history = P .. 'svc:' .. t.service .. ':times'
  redis.call('LPUSH', history, tostring(took))
  redis.call('LTRIM', history, 0, 499)
  return emit(o, {type = 'finished', ticket = t.id, number = t.number, service = t.service,
    counter = counter, took = tostring(took), call = call})
end

local function free_counter(t)
  if t.counter ~= nil and t.counter ~= '' then
    local ckey = P .. 'counter:' .. t.counter
    if redis.call('HGET', ckey, 'current') == t.id then
      redis.call('HSET', ckey, 'current', '')
    end
  end
end

-- The ticket behind ARGV[4], in one of the allowed states; or nil and the error.
local function need_ticket(o, allowed)
  local t = resolve(ARGV[4])
  if t == nil then
    return nil, fail('not_found', 'ticket "' .. string.gsub(ARGV[4], '^%a+:', '') ..
      '" does not exist at office "' .. o.id .. '"')
  end
  if redis.call('EXISTS', P .. 'call:' .. t.id) == 1 then
    return nil, fail('conflict', 'ticket ' .. t.number ..
      ' is a remote consultation: it changes only through its call')
  end
  for _, status in ipairs(allowed) do
    if t.status == status then return t, nil end
  end
  return nil, fail('wrong_state', 'ticket ' .. t.number .. ' is ' .. t.status .. ', not ' ..
    table.concat(allowed, ' or '))
end

-- The counter ARGV[4], in one of the allowed states; or nil and the error.
local function need_counter(o, allowed)
  local cid = ARGV[4]
  local c = counter(cid)
  if c == nil then
    return nil, fail('not_found', 'counter "' .. cid .. '" does not exist at office "' .. o.id .. '"')
  end
  for _, state in ipairs(allowed) do
    if c.state == state then return c, nil end
  end
  return nil, fail('wrong_state', 'counter "' .. cid .. '" is ' .. c.state .. ', not ' ..
    table.concat(allowed, ' or '))
end

-- The error for a counter that still holds a ticket, or nil when it holds none.
local function holding(c)
  if c.current == '' then return nil end
  local held = ticket(c.current)
  if held == nil then return nil end
  return fail('busy', 'counter "' .. c.id .. '" still has ticket ' .. held.number .. ' (' ..
    held.status .. '): finish it, mark it a no-show or transfer it first')
end

local function ok(o, t, event_id, extra)
  local out = {ok = true, event = event_id}
  if t ~= nil then
    t.position = position(o, t)
    out.ticket = t
  end
  for k, v in pairs(extra or {}) do out[k] = v end
  return cjson.encode(out)
end

local function no_office()
  return fail('not_found', 'office "' .. string.sub(P, 5, -3) .. '" does not exist')
end
