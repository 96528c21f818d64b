-- Check in for an appointment: within its window, issue its ticket (as issue.lua does,
-- with the slot's start as the appointment time, so that it is called first once due)
-- and mark the appointment checked in, in one step. A second check-in returns the same
-- ticket. ARGV[4] appointment ref, [5] the ticket's new token, [6] channel.
-- issue.lua's body is loaded above as the function issue_ticket(A), A being its ARGV.
local o = office()
if o == nil then return no_office() end
local a, err = need_appointment(o, ARGV[4])
if err then return err end
if a.status == 'checked_in' then
  local t = ticket(a.ticket)
  if t == nil then
    return fail('wrong_state', 'appointment ' .. a.code .. ' was checked in, and its ticket is closed')
  end
  t.position = position(o, t)
  return appointment_ok(a, nil, {ticket = t, replayed = true})
end
if a.status == 'cancelled' then
  return fail('cancelled', 'appointment ' .. a.code .. ' was cancelled')
end
if NOW < tonumber(a.opens) then
  return fail('too_early', 'check-in for appointment ' .. a.code .. ' opens ' ..
    math.ceil((tonumber(a.start) - tonumber(a.opens)) / 60) .. ' minutes before it')
end
if NOW > tonumber(a.closes) then
  return fail('too_late', 'check-in for appointment ' .. a.code .. ' closed ' ..
    math.floor((tonumber(a.closes) - tonumber(a.start)) / 60) .. ' minutes after it began')
end
local A = {ARGV[1], ARGV[2], ARGV[3], a.service, ARGV[6], '0', a.start, '', ARGV[5], ''}
local issued = cjson.decode(issue_ticket(A))
if issued.error then return cjson.encode(issued) end
local t = issued.ticket
a.status, a.ticket, a.ticket_token, a.checked_in_at = 'checked_in', t.id, t.token, NOW_S
redis.call('HSET', P .. 'appt:' .. a.id, 'status', a.status, 'ticket', a.ticket,
  'ticket_token', a.ticket_token, 'checked_in_at', a.checked_in_at)
redis.call('DEL', P .. 'apptcontact:' .. a.id)
local event = emit(o, {type = 'appointment_checked_in', appointment = a.id, service = a.service,
  ticket = t.id, number = t.number})
return appointment_ok(a, event, {ticket = t, replayed = false})
