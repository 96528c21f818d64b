-- Book a place in a slot. ARGV[4] service, [5] slot start, [6] slot end, [7] the slot's
-- local day, [8] the slot settings' version the slot was computed from, [9] the page's
-- new random token, [10] candidate check-in codes (comma-separated), [11] contact e-mail
-- or "". The place is counted in the same step that checks the capacity: never over-booked.
local o = office()
if o == nil then return no_office() end
local sid, start, ends, day, version, token, codes, contact =
  ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local cfg, err = open_slot(sid, day, start, version)
if err then return err end
local code = free_code(day, '', codes)
if code == nil then return fail('conflict', 'no check-in code was free; try again') end
local ttl = lifetime(o, ends)
local id = string.format('%08d', redis.call('INCR', P .. 'appt_seq'))
local a = {
  id = id, service = sid, start = start, ends = ends, day = day, token = token, code = code,
  status = 'booked', created_at = NOW_S, ticket = '', ticket_token = '', checked_in_at = '',
  cancelled_at = '', changes = '0',
  opens = tostring(tonumber(start) - 60 * tonumber(cfg.before)),
  closes = tostring(tonumber(start) + 60 * tonumber(cfg.after)),
}
take_place(sid, day, start, ttl)
save_appointment(a, ttl)
redis.call('SET', P .. 'apptcode:' .. day .. ':' .. code, id, 'EX', ttl)
if contact ~= '' then redis.call('SET', P .. 'apptcontact:' .. id, contact, 'EX', ttl) end
local event = emit(o, {type = 'appointment_booked', appointment = id, service = sid, slot = start})
return appointment_ok(a, event)
