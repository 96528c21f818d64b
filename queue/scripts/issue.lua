-- Issue a ticket. ARGV[4] service, [5] channel, [6] priority "0"/"1",
-- [7] appointment time or "", [8] idempotency key or "", [9] new token,
-- [10] request fingerprint (to refuse a key reused for a different request), [11]
-- "consultation" when a kiosk raises a consultation (call_request.lua): a remote service
-- takes tickets only that way, each with its call.
local o = office()
if o == nil then return no_office() end
local sid, channel, priority, appt, idem, token, fingerprint =
  ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local idem_key = P .. 'idem:' .. idem
if idem ~= '' then
  local seen = redis.call('GET', idem_key)
  if seen then
    local id, print = string.match(seen, '^([^|]*)|(.*)$')
    if print ~= fingerprint then
      return fail('conflict', 'idempotency key "' .. idem .. '" was already used for a different request')
    end
    local t = ticket(id)
    if t ~= nil then return ok(o, t, nil, {replayed = true}) end
  end
end
local s = service(sid)
if s == nil then return fail('not_found', 'service "' .. sid .. '" does not exist at office "' .. o.id .. '"') end
if s.active ~= '1' then return fail('unavailable', 'service "' .. sid .. '" is not taking tickets now') end
if s.mode == 'remote' and ARGV[11] ~= 'consultation' then
  return fail('invalid', 'service "' .. sid .. '" is a remote consultation: it is raised from a kiosk')
end
local seq_key = P .. 'seq:' .. DAY .. ':' .. sid
local n = redis.call('INCR', seq_key)
redis.call('EXPIRE', seq_key, 3 * 86400)
local id = string.format('%08d', redis.call('INCR', P .. 'ticket_seq'))
local t = {
  id = id, number = s.prefix .. '-' .. string.format('%03d', n), service = sid,
  channel = channel, priority = priority, appt = appt, status = 'waiting',
  sort = NOW_S, issued_at = NOW_S, waiting_since = NOW_S, day = DAY, token = token,
  counter = '', called_at = '', started_at = '', finished_at = '', recalls = '0',
  transfers = '0', origin_service = sid,
}
local flat = {}
for k, v in pairs(t) do
  flat[#flat + 1] = k
  flat[#flat + 1] = v
end
redis.call('HSET', P .. 'ticket:' .. id, unpack(flat))
redis.call('SET', P .. 'tok:' .. token, id)
local key, score = line_of(t)
redis.call('ZADD', key, score, id)
if idem ~= '' then
  redis.call('SET', idem_key, id .. '|' .. fingerprint, 'EX', tonumber(o.idem_ttl))
end
learn('issued', 1)
local event = emit(o, {type = 'issued', ticket = id, number = t.number, service = sid,
  channel = channel, priority = priority, appt = appt})
return ok(o, t, event, {replayed = false})
