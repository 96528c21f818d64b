-- The resident answers the satisfaction question after the call, once: 1 (bad) to 5
-- (good). ARGV[4] ticket id, [5] the kiosk id, [6] the rating.
local o = office()
if o == nil then return no_office() end
local c, err = need_call({ended = true})
if err then return err end
if c.kiosk ~= ARGV[5] then
  return fail('forbidden', 'consultation ' .. c.number .. ' was not raised by this kiosk')
end
if c.rating ~= '' then
  return fail('conflict', 'consultation ' .. c.number .. ' was already rated')
end
save(c, {rating = ARGV[6]})
emit(o, {type = 'consult_rated', call = call_id(c), ticket = c.ticket, topic = c.topic,
  service = c.service, kiosk = c.kiosk, specialist = c.last_specialist, rating = ARGV[6]})
return call_ok(c)
