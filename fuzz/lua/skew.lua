-- Driver for fuzz/skew.c: the skew estimator (skew.c) fed a program read from the
-- input: Date headers (arbitrary strings) with send/receive times, intervals
-- (realistic, or any finite doubles as a hostile JWT iat gives), queries at any
-- time (the wall clock may step back), resets. Oracles: nothing raises for
-- well-typed finite arguments; the interval is never empty or NaN; the point
-- estimate is its midpoint; conversions use its ends; a Date that does not
-- parse and a round trip over max_rtt are refused with their kinds.
local core = require "skewguard.core"

local BASE = 1700000000
local SOURCES = { "date", "sntp", "jwt_iat", "interval", "a", "b", "c", "d" }
local WHICH = { "mid", "early", "late" }

local reader = require("bytes").reader

local function check_interval(est, now)
  local lo, hi = est:bounds(now)
  if lo == nil then
    if est:samples() ~= 0 then error("no bounds with samples") end
    if est:skew(now) ~= nil or est:to_local(0, "mid", now) ~= nil then error("estimate without samples") end
    return
  end
  if est:samples() < 1 then error("bounds without samples") end
  if lo ~= lo or hi ~= hi then error("NaN bound") end
  if lo > hi then error(("empty interval [%.17g, %.17g]"):format(lo, hi)) end
  local mid = est:skew(now)
  if mid ~= lo + (hi - lo) / 2 then error("skew is not the midpoint") end
  if est:uncertainty(now) ~= (hi - lo) / 2 then error("uncertainty is not the half-width") end
  local s = BASE
  if est:to_local(s, "early", now) ~= s + lo or est:to_local(s, "late", now) ~= s + hi then
    error("to_local does not use the interval's ends")
  end
  if est:to_server(s, "early", now) ~= s - hi or est:to_server(s, "late", now) ~= s - lo then
    error("to_server does not use the interval's ends")
  end
end

return function(input)
  local r = reader(input)
  local max_samples = r.byte() % 256 + 1
  local drift = ({ 0, 50, 500, 10000 })[r.byte() % 4 + 1]
  local est = core.skew_new(drift, max_samples, 5)
  local now = BASE
  local ops = 0
  while r.left() > 0 and ops < 200 do
    ops = ops + 1
    local op = r.byte() % 6
    now = now + r.int(3) / 1000 -- may step back: wall clocks do
    if op == 0 then
      local header = r.str(40)
      local rtt = r.byte() / 40
      local ok, msg, kind = est:observe_date(header, now - rtt, now, SOURCES[r.byte() % 8 + 1])
      if ok then
        if rtt > 5 then error("kept a sample with a round trip over max_rtt") end
        if not core.parse_http_date(header) then error("kept a sample whose Date does not parse") end
      else
        if type(msg) ~= "string" then error("observe_date failed without a message") end
        if rtt > 5 then
          if kind ~= "bogus" then error("long round trip not refused as bogus") end
        elseif kind ~= "protocol" or core.parse_http_date(header) then
          error("Date refused with kind " .. tostring(kind))
        end
      end
    elseif op == 1 then
      local lo, hi
      if r.byte() % 2 == 0 then
        lo = r.int(3) / 100
        hi = lo + r.byte() / 100
      else
        lo, hi = r.finite(), r.finite()
        if lo > hi then lo, hi = hi, lo end
      end
      assert(est:observe_interval(lo, hi, SOURCES[r.byte() % 8 + 1], now))
    elseif op == 2 then
      check_interval(est, now)
    elseif op == 3 then
      local which = WHICH[r.byte() % 3 + 1]
      est:server_now(which, now)
      est:to_local(BASE + r.int(4), which, now)
    elseif op == 4 then
      if r.byte() % 8 == 0 then est:reset() end
      if est:samples() > max_samples then error("more samples than max_samples") end
      est:sources()
      est:steps()
      tostring(est)
    else
      check_interval(est, now + r.int(2))
    end
  end
  check_interval(est, now)
  est:close()
end
