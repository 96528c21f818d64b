-- A specialist accepts a waiting consultation: the call rings until both ends have
-- joined. ARGV[4] ticket id, or "" for the longest-waiting consultation of the services
-- in [6]; [5] the specialist's user name; [6] services the specialist serves, comma-
-- separated; [7] seconds the call may ring.
local o = office()
if o == nil then return no_office() end
-- One call at a time: a specialist whose call still rings or runs may not take another.
local mine = P .. 'specialist-call:' .. ARGV[5]
local held = redis.call('GET', mine)
if held then
  local h = the_call(held)
  if h ~= nil and h.specialist == ARGV[5] and LIVE[h.state] then
    return fail('busy', 'you are already in consultation ' .. h.number .. ' (' .. h.state ..
      '); end it before accepting another')
  end
end
local serves = {}
for _, sid in ipairs(split(ARGV[6])) do serves[sid] = true end
if ARGV[4] == '' then
  local best, best_score = nil, nil
  for sid in pairs(serves) do
    for _, kind in ipairs({'priority', 'regular'}) do
      local r = redis.call('ZRANGE', P .. 'q:' .. sid .. ':' .. kind, 0, 19, 'WITHSCORES')
      for i = 1, #r, 2 do
        local score = tonumber(r[i + 1])
        if kind == 'priority' then score = score - 1e12 end
        if the_call(r[i]) ~= nil and (best == nil or score < best_score) then
          best, best_score = r[i], score
        end
      end
    end
  end
  if best == nil then return cjson.encode({ok = true, call = cjson.null}) end
  ARGV[4] = best
end
local c, err = need_call({waiting = true})
if err then return err end
if not serves[c.service] then
  return fail('forbidden', 'you do not serve "' .. c.service .. '", the topic of consultation ' ..
    c.number)
end
local t = ticket(c.ticket)
if t == nil or t.status ~= 'waiting' then
  return fail('wrong_state', 'ticket of consultation ' .. c.number .. ' is not waiting')
end
leave_line(t)
set_status(t, 'called', {called_at = NOW_S, counter = ''})
learn('called:' .. t.service, 1)
emit(o, {type = 'called', ticket = t.id, number = t.number, service = t.service, counter = '',
  waited = tostring(NOW - tonumber(t.issued_at)), call = call_id(c)})
save(c, {specialist = ARGV[5], last_specialist = ARGV[5], specialist_conn = '', guest = '',
  guest_conn = '', accepted_at = NOW_S})
due(c, NOW + tonumber(ARGV[7]))
move(o, c, 'ringing', 'accepted')
redis.call('SET', mine, c.ticket, 'EX', tonumber(o.ticket_ttl))
return call_ok(c)
