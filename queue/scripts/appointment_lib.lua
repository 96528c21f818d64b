-- Appointments: helpers shared by the appointment scripts, loaded after _lib.lua.
-- An appointment is a hash "appt:<id>"; its page's token ("appttok:<token>") and its
-- six-digit check-in code of its local day ("apptcode:<day>:<code>") point at it; the
-- places taken in a service's slots of a day are counted in "booked:<service>:<day>",
-- one field per slot start. Every key of an appointment expires a while after its slot.

local function appointment(id)
  local a = hgetall(P .. 'appt:' .. id)
  if a.id == nil then return nil end
  return a
end

-- An appointment reference is "token:<page token>" or "code:<check-in code>" (of today).
local function need_appointment(o, ref)
  local kind, value = string.match(ref, '^(%a+):(.+)$')
  local id = nil
  if kind == 'token' then
    id = redis.call('GET', P .. 'appttok:' .. value)
  elseif kind == 'code' then
    id = redis.call('GET', P .. 'apptcode:' .. DAY .. ':' .. value)
  end
  local a = id and appointment(id) or nil
  if a == nil then
    local what = 'appointment'
    if kind == 'code' then what = 'check-in code' end
    return nil, fail('not_found', what .. ' "' .. tostring(value) .. '" does not exist at office "' ..
      o.id .. '"' .. (kind == 'code' and ' today' or ''))
  end
  return a, nil
end

-- How long an appointment's keys live: until its slot ends, then as long as a closed ticket.
local function lifetime(o, ends)
  return math.max(60, math.ceil(tonumber(ends) - NOW) + tonumber(o.ticket_ttl))
end

local function counts_key(sid, day)
  return P .. 'booked:' .. sid .. ':' .. day
end

local function places_taken(sid, day, start)
  return tonumber(redis.call('HGET', counts_key(sid, day), start) or '0')
end

local function take_place(sid, day, start, ttl)
  local key = counts_key(sid, day)
  redis.call('HINCRBY', key, start, 1)
  if redis.call('TTL', key) < ttl then redis.call('EXPIRE', key, ttl) end
end

local function free_place(a)
  local key = counts_key(a.service, a.day)
  if tonumber(redis.call('HINCRBY', key, a.start, -1)) <= 0 then redis.call('HDEL', key, a.start) end
end

-- A check-in code free on ``day``: ``keep`` if it is, else the first free candidate.
local function free_code(day, keep, candidates)
  local choices = split(candidates)
  if keep ~= '' then table.insert(choices, 1, keep) end
  for _, code in ipairs(choices) do
    if redis.call('EXISTS', P .. 'apptcode:' .. day .. ':' .. code) == 0 then return code end
  end
  return nil
end

-- The slot settings of service ``sid`` if its slot ``start`` on local ``day`` has a place
-- free (the caller computed the slot from settings of ``version``); or nil and the error.
local function open_slot(sid, day, start, version)
  if service(sid) == nil then
    return nil, fail('not_found', 'service "' .. sid .. '" does not exist at office "' ..
      string.sub(P, 5, -3) .. '"')
  end
  local cfg = hgetall(P .. 'slots:' .. sid)
  if cfg.enabled ~= '1' then
    return nil, fail('unavailable', 'service "' .. sid .. '" takes no appointments')
  end
  if cfg.version ~= version then
    return nil, fail('conflict', 'the appointment slots of service "' .. sid ..
      '" changed a moment ago; choose a slot again')
  end
  if tonumber(start) <= NOW then
    return nil, fail('unavailable', 'the slot has already begun; choose a later one')
  end
  if places_taken(sid, day, start) >= tonumber(cfg.capacity) then
    return nil, fail('full', 'the slot is full; choose another one')
  end
  return cfg, nil
end

local function save_appointment(a, ttl)
  local flat = {}
  for k, v in pairs(a) do
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  local key = P .. 'appt:' .. a.id
  redis.call('HSET', key, unpack(flat))
  redis.call('EXPIRE', key, ttl)
  redis.call('SET', P .. 'appttok:' .. a.token, a.id, 'EX', ttl)
end

local function appointment_ok(a, event, extra)
  local out = {ok = true, event = event, appointment = a}
  for k, v in pairs(extra or {}) do out[k] = v end
  return cjson.encode(out)
end
