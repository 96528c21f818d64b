-- Cancel a booked appointment: its place is freed, its code and contact deleted. The
-- appointment stays readable by its token (as cancelled) until its keys expire.
-- ARGV[4] appointment ref. Cancelling a cancelled appointment changes nothing.
local o = office()
if o == nil then return no_office() end
local a, err = need_appointment(o, ARGV[4])
if err then return err end
if a.status == 'cancelled' then return appointment_ok(a, nil, {unchanged = true}) end
if a.status ~= 'booked' then
  return fail('wrong_state', 'appointment ' .. a.code .. ' is ' .. a.status ..
    ': it has a ticket now, cancel the ticket instead')
end
free_place(a)
redis.call('DEL', P .. 'apptcode:' .. a.day .. ':' .. a.code, P .. 'apptcontact:' .. a.id)
a.status, a.cancelled_at = 'cancelled', NOW_S
redis.call('HSET', P .. 'appt:' .. a.id, 'status', a.status, 'cancelled_at', a.cancelled_at)
local event = emit(o, {type = 'appointment_cancelled', appointment = a.id, service = a.service,
  slot = a.start})
return appointment_ok(a, event)
