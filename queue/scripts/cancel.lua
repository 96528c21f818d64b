-- A ticket leaves the queue: the resident cancelled it, or gave up waiting.
-- ARGV[4] ticket ref, ARGV[5] reason: "resident" or "abandoned".
local o = office()
if o == nil then return no_office() end
local t, err = need_ticket(o, {'waiting', 'called'})
if err then return err end
local status = 'cancelled'
if ARGV[5] == 'abandoned' then status = 'abandoned' end
if t.status == 'waiting' then
  leave_line(t)
  learn('leaves', 1)
else
  free_counter(t)
end
set_status(t, status, {finished_at = NOW_S})
close_ticket(o, t)
local event = emit(o, {type = status, ticket = t.id, number = t.number, service = t.service})
return ok(o, t, event)
