-- A kiosk raises a consultation: a ticket of a remote service (channel "kiosk") and its
-- call, waiting in the queue. A kiosk has one open consultation at a time: asking again
-- returns the open one. ARGV[4] kiosk id, [5] service, [6] idempotency key or "",
-- [7] new token, [8] request fingerprint. (issue_ticket is issue.lua, see consult/calls.py.)
local o = office()
if o == nil then return no_office() end
local kiosk, sid = ARGV[4], ARGV[5]
local open = P .. 'kiosk-call:' .. kiosk
local held = redis.call('GET', open)
if held then
  local c = the_call(held)
  if c ~= nil and c.state ~= 'ended' then return call_ok(c, {replayed = true}) end
end
local s = service(sid)
if s ~= nil and s.mode ~= 'remote' then
  return fail('invalid', 'service "' .. sid .. '" is not a remote consultation')
end
local issued = cjson.decode(issue_ticket({ARGV[1], ARGV[2], ARGV[3], sid, 'kiosk', '0', '',
  ARGV[6], ARGV[7], ARGV[8], 'consultation'}))
if issued.error ~= nil then return cjson.encode(issued) end
local t = issued.ticket
local existing = the_call(t.id)
if existing ~= nil then return call_ok(existing, {replayed = true}) end
local c = {ticket = t.id, office = o.id, number = t.number, topic = sid, service = sid,
  kiosk = kiosk, state = 'waiting', reason = 'requested', since = NOW_S, issued_at = t.issued_at,
  specialist = '', last_specialist = '', guest = '', kiosk_conn = '', specialist_conn = '',
  guest_conn = '', deadline = '', accepted_at = '', connected_at = '', ended_at = '',
  waited = '', talked = '0', talk_since = '', transfer = '', transfers = '0', rating = ''}
save(c, c)
redis.call('SET', open, t.id)
move(o, c, 'waiting', 'requested')
return call_ok(c, {replayed = false})
