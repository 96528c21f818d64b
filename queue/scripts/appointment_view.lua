-- Read an appointment. ARGV[4] appointment ref.
local o = office()
if o == nil then return no_office() end
local a, err = need_appointment(o, ARGV[4])
if err then return err end
return appointment_ok(a, nil)
