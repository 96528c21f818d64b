-- A call's timeout fell due (by the caller's clock). ARGV[4] ticket id, [5] seconds to
-- wait for a kiosk that is gone when its resident goes back to the queue. A kiosk that is
-- gone ends the call ("kiosk_lost"); a specialist who never joined or did not come back
-- puts the resident back at the front of the queue.
local o = office()
if o == nil then return no_office() end
local c = the_call(ARGV[4])
if c == nil or c.state == 'ended' or c.deadline == '' then
  redis.call('ZREM', DUE, ARGV[4])
  return cjson.encode({ok = true, changed = false})
end
if tonumber(c.deadline) > NOW then return call_ok(c, {changed = false}) end
local t = ticket(c.ticket)
if c.kiosk_conn == '' then
  end_call(o, c, t, 'kiosk_lost')
elseif c.state == 'ringing' and c.specialist_conn == '' then
  requeue(o, c, t, 'unanswered', tonumber(ARGV[5]))
elseif c.state == 'reconnecting' and c.specialist_conn == '' then
  requeue(o, c, t, 'specialist_lost', tonumber(ARGV[5]))
else
  due(c, nil)
  return call_ok(c, {changed = false})
end
return call_ok(c, {changed = true})
