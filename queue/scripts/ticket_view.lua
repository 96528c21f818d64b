-- Read one ticket and its position. ARGV[4] ticket ref. Changes nothing.
local o = office()
if o == nil then return no_office() end
local t = resolve(ARGV[4])
if t == nil then return fail('not_found', 'no such ticket at office "' .. o.id .. '"') end
return ok(o, t, nil)
