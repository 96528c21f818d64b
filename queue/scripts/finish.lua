-- Service is over. ARGV[4] ticket ref. The service time joins the service's
-- history, from which the estimator learns.
local o = office()
if o == nil then return no_office() end
local t, err = need_ticket(o, {'serving'})
if err then return err end
free_counter(t)
local event = finish_ticket(o, t, t.counter)
return ok(o, t, event)
