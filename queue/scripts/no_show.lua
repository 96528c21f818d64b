-- The resident never came to the counter. ARGV[4] ticket ref.
local o = office()
if o == nil then return no_office() end
local t, err = need_ticket(o, {'called'})
if err then return err end
free_counter(t)
set_status(t, 'no_show', {finished_at = NOW_S})
close_ticket(o, t)
learn('noshow:' .. t.service, 1)
learn('noshow_hold', NOW - tonumber(t.called_at))
local event = emit(o, {type = 'no_show', ticket = t.id, number = t.number, service = t.service,
  counter = t.counter})
return ok(o, t, event)
