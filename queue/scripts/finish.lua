-- Service is over. ARGV[4] ticket ref. The service time joins the service's
-- history, from which the estimator learns.
local o = office()
if o == nil then return no_office() end
local t, err = need_ticket(o, {'serving'})
if err then return err end
free_counter(t)
set_status(t, 'done', {finished_at = NOW_S})
close_ticket(o, t)
local took = NOW - tonumber(t.started_at)
local history = P .. 'svc:' .. t.service .. ':times'
redis.call('LPUSH', history, tostring(took))
redis.call('LTRIM', history, 0, 499)
local event = emit(o, {type = 'finished', ticket = t.id, number = t.number, service = t.service,
  counter = t.counter, took = tostring(took)})
return ok(o, t, event)
