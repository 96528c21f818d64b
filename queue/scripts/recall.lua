-- Call a called ticket again (the resident did not come yet). ARGV[4] ticket ref.
local o = office()
if o == nil then return no_office() end
local t, err = need_ticket(o, {'called'})
if err then return err end
set_status(t, 'called', {recalls = tostring(tonumber(t.recalls) + 1), recalled_at = NOW_S})
local event = emit(o, {type = 'recalled', ticket = t.id, number = t.number, service = t.service,
  counter = t.counter, recalls = t.recalls})
return ok(o, t, event)
