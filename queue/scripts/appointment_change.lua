-- Move a booked appointment to another slot of its service, in one step: the new place
-- is taken and the old one freed, or nothing changes. ARGV[4] appointment ref, [5] new
-- slot start, [6] its end, [7] its local day, [8] slot settings' version, [9] candidate
-- check-in codes (used only when the day changes and the old code is taken that day).
local o = office()
if o == nil then return no_office() end
local a, err = need_appointment(o, ARGV[4])
if err then return err end
local start, ends, day, version, codes = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
if a.status ~= 'booked' then
  return fail('wrong_state', 'appointment ' .. a.code .. ' is ' .. a.status .. ', not booked')
end
if start == a.start then return appointment_ok(a, nil, {unchanged = true}) end
local cfg
cfg, err = open_slot(a.service, day, start, version)
if err then return err end
local code = a.code
if day ~= a.day then
  code = free_code(day, a.code, codes)
  if code == nil then return fail('conflict', 'no check-in code was free; try again') end
end
local ttl = lifetime(o, ends)
local from = a.start
free_place(a)
take_place(a.service, day, start, ttl)
if day ~= a.day then
  redis.call('DEL', P .. 'apptcode:' .. a.day .. ':' .. a.code)
end
redis.call('SET', P .. 'apptcode:' .. day .. ':' .. code, a.id, 'EX', ttl)
a.start, a.ends, a.day, a.code = start, ends, day, code
a.changes = tostring(tonumber(a.changes) + 1)
a.opens = tostring(tonumber(start) - 60 * tonumber(cfg.before))
a.closes = tostring(tonumber(start) + 60 * tonumber(cfg.after))
save_appointment(a, ttl)
local contact = P .. 'apptcontact:' .. a.id
if redis.call('EXISTS', contact) == 1 then redis.call('EXPIRE', contact, ttl) end
local event = emit(o, {type = 'appointment_changed', appointment = a.id, service = a.service,
  slot = start, from = from})
return appointment_ok(a, event)
