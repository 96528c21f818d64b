-- Record an administrative action that changes no queue state (a staff account
-- created, disabled, its sessions ended, ...) in the office's event stream, so
-- that the audit trail shows who did it. ARGV[4] event type, ARGV[5] JSON of
-- extra string fields.
local o = office()
if o == nil then return no_office() end
local event = cjson.decode(ARGV[5])
event.type = ARGV[4]
local id = emit(o, event)
return cjson.encode({ok = true, event = id})
