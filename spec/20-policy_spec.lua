local ratelimit = require "skewguard.ratelimit"
local backoff = require "skewguard.backoff"
local regions = require "skewguard.regions"
local log = require "skewguard.log"

describe("client-side rate limiter", function()
  -- Simulated time: the limiter is pure, so the property is checked exactly.
  local function simulate(limit, window, n, gap)
    local lim = ratelimit.new(limit, window)
    local now, sends = 0, {}
    for i = 1, n do
      now = now + (gap and gap(i) or 0)
      -- like the client: wait, then check again (sleeps may end early by rounding)
      local wait = lim:delay(now)
      while wait > 0 do now = now + wait; wait = lim:delay(now) end
      lim:record(now)
      sends[#sends + 1] = now
    end
    return sends
  end

  local function max_in_window(sends, window)
    local best, j = 0, 1
    for i = 1, #sends do
      -- (x + w) - x can round to just under w: compare with a nanosecond of slack
      while sends[i] - sends[j] >= window - 1e-9 do j = j + 1 end
      if i - j + 1 > best then best = i - j + 1 end
    end
    return best
  end

  it("holds 400 back-to-back requests to at most 300 in any 60 s window", function()
    local sends = simulate(300, 60, 400)
    assert.equal(300, max_in_window(sends, 60))
    -- the 301st waits for the first to leave the window, not longer
    assert.near(60, sends[301], 1e-9)
  end)

  it("never exceeds the limit with irregular arrivals", function()
    local seed = 12345
    local function rnd() seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 end
    local sends = simulate(10, 1, 500, function() return rnd() * 0.2 end)
    assert.is_true(max_in_window(sends, 1) <= 10)
    assert.equal(10, max_in_window(sends, 1)) -- and it is not needlessly strict
  end)

  it("lets requests through without waiting under the limit", function()
    local lim = ratelimit.new(5, 1)
    for t = 1, 5 do assert.equal(0, lim:delay(t * 0.01)); lim:record(t * 0.01) end
    assert.is_true(lim:delay(0.06) > 0.9)
  end)
end)

describe("backoff", function()
  it("grows exponentially within [d/2, d] and respects the cap", function()
    for attempt = 1, 10 do
      local d = math.min(30, 0.5 * 2 ^ (attempt - 1))
      assert.near(d / 2, backoff.delay(attempt, 0.5, 30, function() return 0 end), 1e-12)
      assert.near(d, backoff.delay(attempt, 0.5, 30, function() return 1 end), 1e-12)
    end
  end)
end)

describe("regions", function()
  it("map AWS-style names to Genesys domains", function()
    assert.equal("mypurecloud.com", regions["us-east-1"])
    assert.equal("mypurecloud.ie", regions["eu-west-1"])
    assert.equal("use2.us-gov-pure.cloud", regions["us-east-2"])
    assert.equal("edee1.eusc-pure.cloud", regions["eusc-de-east-1"])
    local n = 0
    for _ in pairs(regions) do n = n + 1 end
    assert.equal(18, n)
  end)
end)

describe("logger", function()
  it("is quiet by default and filters by level when a sink is given", function()
    local seen = {}
    local l = log.new(function(level, msg, fields) seen[#seen + 1] = { level, msg, fields } end, "warn")
    l:debug("no"); l:info("no"); l:warn("yes", { a = 1 }); l:error("yes too")
    assert.equal(2, #seen)
    assert.equal("warn", seen[1][1])
    assert.equal(1, seen[1][3].a)
    assert.is_false(l:enabled("info"))
  end)

  it("formats fields in a stable order", function()
    assert.equal(" a=1 b=x c=0.5", log.format_fields({ c = 0.5, b = "x", a = 1 }))
  end)
end)

describe("client-side rate limiter with late sends", function()
  it("keeps the limit on the actual send instants when sends lag their reservations", function()
    local lim = ratelimit.new(3, 1)
    local now, sends = 0, {}
    -- a few requests leave 0.3 s after their reservation (slow connect), the rest at once
    for i = 1, 30 do
      local wait = lim:delay(now)
      while wait > 0 do now = now + wait; wait = lim:delay(now) end
      local slot = lim:record(now)
      local actual = now + ((i == 1 or i == 11 or i == 20) and 0.3 or 0)
      lim:sent(slot, now, actual)
      sends[#sends + 1] = actual
      now = math.max(now, actual)
    end
    table.sort(sends)
    for i = 4, #sends do
      assert.is_true(sends[i] - sends[i - 3] >= 1 - 1e-9, "4 sends within a second at " .. i)
    end
  end)

  it("ignores a slot that was reused meanwhile", function()
    local lim = ratelimit.new(2, 1)
    local slot = lim:record(0)
    lim:record(0.1)
    lim:record(1.0)          -- reuses slot 1
    lim:sent(slot, 0, 5)     -- stale: must not touch the new entry
    assert.near(0.1 + 1 - 1.05, lim:delay(1.05), 1e-9)
  end)
end)
