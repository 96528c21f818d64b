-- Helpers of the consultation scripts (call_*.lua), loaded after _lib.lua.
-- A consultation is a ticket of a remote service raised by a kiosk; its call lives in
-- the hash P .. 'call:' .. <ticket id>, its signaling on that key's ':relay' channel.
-- States: waiting (in the queue) -> ringing (a specialist accepted) -> connected
-- (kiosk and specialist both joined) <-> reconnecting (one of them left) -> ended.
-- ARGV[4] is the call's ticket id in every script but call_request.
local DUE = P .. 'calls:due'
local ROLES = {kiosk = true, specialist = true, guest = true}
-- States in which a call holds its specialist (and its invited person).
local LIVE = {ringing = true, connected = true, reconnecting = true}

local function call_key(tid) return P .. 'call:' .. tid end

local function the_call(tid)
  local c = hgetall(call_key(tid))
  if c.ticket == nil then return nil end
  return c
end

local function call_id(c) return c.office .. '.' .. c.ticket end

-- The call ARGV[4], in one of the allowed states; or nil and the error.
local function need_call(allowed)
  local c = the_call(ARGV[4])
  if c == nil then
    return nil, fail('not_found', 'consultation "' .. ARGV[4] .. '" does not exist at office "' ..
      string.sub(P, 5, -3) .. '"')
  end
  if c.state == 'ended' and allowed.ended == nil then
    return nil, fail('gone', 'consultation ' .. c.number .. ' has ended (' .. c.reason .. ')')
  end
  if allowed[c.state] == nil then
    local names = {}
    for state in pairs(allowed) do names[#names + 1] = state end
    table.sort(names)
    return nil, fail('wrong_state', 'consultation ' .. c.number .. ' is ' .. c.state .. ', not ' ..
      table.concat(names, ' or '))
  end
  return c, nil
end

local function save(c, fields)
  local flat = {}
  for k, v in pairs(fields) do
    c[k] = v
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  if #flat > 0 then redis.call('HSET', call_key(c.ticket), unpack(flat)) end
end

-- When the call's timeout falls due (nil: it has none).
local function due(c, at)
  if at == nil then
    save(c, {deadline = ''})
    redis.call('ZREM', DUE, c.ticket)
  else
    save(c, {deadline = tostring(at)})
    redis.call('ZADD', DUE, at, c.ticket)
  end
end

local function present(c)
  return {kiosk = c.kiosk_conn ~= '', specialist = c.specialist_conn ~= '',
    guest = c.guest_conn ~= ''}
end

local function state_message(c)
  local deadline = cjson.null
  if c.deadline ~= '' then deadline = tonumber(c.deadline) end
  return {type = 'state', call = call_id(c), state = c.state, reason = c.reason,
    service = c.service, specialist = c.specialist, guest = c.guest, present = present(c),
    deadline = deadline, rating = c.rating}
end

-- Send a message to the call's participants (``only``: to one connection), on every process.
local function tell(c, message, only)
  local envelope = {from = 'server', message = message}
  if only ~= nil then envelope.only = only end
  redis.call('PUBLISH', call_key(c.ticket) .. ':relay', cjson.encode(envelope))
end

-- Change the call's state: an event on the office's stream, and word to its participants.
local function move(o, c, state, reason, extra)
  local fields = {state = state, reason = reason, since = NOW_S}
  for k, v in pairs(extra or {}) do fields[k] = v end
  save(c, fields)
  local event = emit(o, {type = 'consult_' .. state, call = call_id(c), ticket = c.ticket,
    number = c.number, service = c.service, kiosk = c.kiosk, specialist = c.specialist,
    reason = reason})
  tell(c, state_message(c))
  return event
end

-- Talking time: counted from connecting until the call goes back to the queue or ends.
local function talk_stop(c)
  if c.talk_since ~= '' then
    save(c, {talked = tostring(tonumber(c.talked) + NOW - tonumber(c.talk_since)),
      talk_since = ''})
  end
end

local function serve_ticket(o, t, c)
  set_status(t, 'serving', {started_at = NOW_S})
  emit(o, {type = 'started', ticket = t.id, number = t.number, service = t.service,
    counter = '', call = call_id(c)})
end

-- The resident goes back to the front of their service's line (a specialist never
-- answered, declined, or was lost): ahead of everyone, as if called first.
local function requeue(o, c, t, reason, grace)
  talk_stop(c)
  free_counter(t)
  local head = redis.call('ZRANGE', P .. 'q:' .. t.service .. ':regular', 0, 0, 'WITHSCORES')
  local sort = tonumber(t.sort)
  if head[2] ~= nil and tonumber(head[2]) <= sort then sort = tonumber(head[2]) - 0.001 end
  set_status(t, 'waiting', {counter = '', called_at = '', started_at = '',
    waiting_since = NOW_S, sort = tostring(sort)})
  local key, score = line_of(t)
  redis.call('ZADD', key, score, t.id)
  save(c, {specialist = '', specialist_conn = '', guest = '', guest_conn = ''})
  if c.kiosk_conn == '' then due(c, NOW + grace) else due(c, nil) end
  return move(o, c, 'waiting', reason)
end

-- The call ends; its ticket closes as served, cancelled or abandoned, and the office's
-- stream gets the consultation's record (no media, snapshot or chat is ever kept).
local function end_call(o, c, t, reason)
  if t ~= nil and t.status == 'serving' then
    finish_ticket(o, t, '', call_id(c))
  elseif t ~= nil and (t.status == 'called' or t.status == 'waiting') then
    if t.status == 'waiting' then
      leave_line(t)
      learn('leaves', 1)
    end
    local status = 'cancelled'
    if reason == 'kiosk_lost' then status = 'abandoned' end
    set_status(t, status, {finished_at = NOW_S})
    close_ticket(o, t)
    emit(o, {type = status, ticket = t.id, number = t.number, service = t.service,
      call = call_id(c)})
  end
  talk_stop(c)
  if c.waited == '' then save(c, {waited = tostring(NOW - tonumber(c.issued_at))}) end
  due(c, nil)
  local event = move(o, c, 'ended', reason, {ended_at = NOW_S})
  local open = P .. 'kiosk-call:' .. c.kiosk
  if redis.call('GET', open) == c.ticket then redis.call('DEL', open) end
  redis.call('EXPIRE', call_key(c.ticket), tonumber(o.ticket_ttl))
  emit(o, {type = 'consultation', call = call_id(c), ticket = c.ticket, topic = c.topic,
    service = c.service, kiosk = c.kiosk, specialist = c.last_specialist, waited = c.waited,
    talked = c.talked, outcome = reason, transfer = c.transfer, transfers = c.transfers})
  return event
end

local function call_ok(c, extra)
  local out = {ok = true, call = c}
  for k, v in pairs(extra or {}) do out[k] = v end
  return cjson.encode(out)
end
