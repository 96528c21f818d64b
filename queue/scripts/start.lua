-- The resident reached the counter and service begins. ARGV[4] ticket ref.
local o = office()
if o == nil then return no_office() end
local t, err = need_ticket(o, {'called'})
if err then return err end
set_status(t, 'serving', {started_at = NOW_S})
local event = emit(o, {type = 'started', ticket = t.id, number = t.number, service = t.service,
  counter = t.counter})
return ok(o, t, event)
