-- The sans-I/O SNTP exchange: request building, reply validation and the offset
-- arithmetic, with injected times and hand-built replies.
local core = require "skewguard.core"
local pkt = require "support.ntp_packet"

-- Dyadic fractions are exact in doubles and in 32.32 fixed point: the arithmetic
-- must then be exact too, not merely close.
local T1 = 1700000000.5
local MONO = 5000.25

local function exchange(limit)
  local ex, request = core.sntp_request(limit)
  ex:sent(MONO, T1)
  return ex, pkt.origin_of(request)
end

-- A well-formed reply to `origin` with the server `offset` seconds ahead, a `hold`
-- between its stamps, arriving `rtt` after T1; extra fields override.
local function reply(origin, offset, hold, over)
  local f = { origin = origin, t2 = T1 + offset + 2 ^ -10, stratum = 2 }
  f.t3 = f.t2 + hold
  for k, v in pairs(over or {}) do f[k] = v end
  return pkt.reply(f)
end

describe("sntp exchange (sans-I/O)", function()
  describe("request", function()
    it("is a 48-byte version 4 client packet whose only content is a random transmit timestamp", function()
      local ex, request = core.sntp_request()
      assert.equal(48, #request)
      assert.equal(0x23, request:byte(1)) -- LI 0, VN 4, mode 3
      assert.equal(string.rep("\0", 39), request:sub(2, 40))
      assert.not_equal(string.rep("\0", 8), request:sub(41, 48))
      assert.equal(request, ex:packet())
      local _, other = core.sntp_request()
      assert.not_equal(request:sub(41, 48), other:sub(41, 48))
    end)

    it("hides the local clock: the transmit field is not the send time", function()
      local seen = {}
      for _ = 1, 50 do
        local _, request = core.sntp_request()
        local seconds = pkt.read32(request, 41) - pkt.NTP_UNIX_OFFSET
        -- a clock-derived value would sit within a day of now; 50 random ones cannot all
        assert.is_nil(seen[request:sub(41, 48)])
        seen[request:sub(41, 48)] = true
        seen.near = (seen.near or 0) + ((math.abs(seconds - os.time()) < 86400) and 1 or 0)
      end
      assert.is_true(seen.near < 5)
    end)

    it("refuses to validate before the send time is known", function()
      local ex, request = core.sntp_request()
      local data = reply(pkt.origin_of(request), 0, 0)
      assert.has_error(function() ex:validate(data, MONO, T1) end,
        "skewguard.sntp: validate() before sent(): T1 is unknown")
    end)

    it("rejects a negative or non-finite root distance limit", function()
      assert.has_error(function() core.sntp_request(-1) end)
      assert.has_error(function() core.sntp_request(1 / 0) end)
    end)
  end)

  describe("offset arithmetic", function()
    it("computes offset, delay, skew and uncertainty exactly from T1..T4", function()
      local ex, origin = exchange()
      local data = reply(origin, 10, 2 ^ -11, { root_delay = 2 ^ -6, root_dispersion = 2 ^ -7 })
      local rtt = 2 ^ -8
      local r = assert(ex:validate(data, MONO + rtt, T1 + rtt))
      -- T2 - T1 = 10 + 2^-10; T3 - T4 = 10 + 2^-10 + 2^-11 - 2^-8
      local offset = ((10 + 2 ^ -10) + (10 + 2 ^ -10 + 2 ^ -11 - 2 ^ -8)) / 2
      assert.equal(offset, r.offset)
      assert.equal(-offset, r.skew)
      assert.equal(2 ^ -8 - 2 ^ -11, r.delay)
      assert.equal(2 ^ -6 / 2 + 2 ^ -7, r.root_distance)
      assert.equal(r.delay / 2 + r.root_distance, r.uncertainty)
      assert.equal(2, r.stratum)
      assert.equal(0, r.leap)
      assert.equal(4, r.version)
      assert.equal("192.0.2.1", r.refid)
      assert.equal(rtt, r.rtt)
      assert.equal(MONO + rtt / 2, r.mono)
      assert.equal(T1 + rtt / 2, r.wall)
    end)

    it("uses the local send time as T1, never the random value it sent", function()
      local ex, origin = exchange()
      local r = assert(ex:validate(reply(origin, 0, 0), MONO + 2 ^ -9, T1 + 2 ^ -9))
      -- had the random origin been used as T1, the offset would be years, not this
      assert.equal(((2 ^ -10) + (2 ^ -10 - 2 ^ -9)) / 2, r.offset)
    end)

    it("reports the skew with the project's sign: positive when the local clock is ahead", function()
      local ex, origin = exchange()
      local r = assert(ex:validate(reply(origin, -3, 0), MONO + 2 ^ -9, T1 + 2 ^ -9))
      assert.is_true(r.skew > 2.99 and r.skew < 3.01)
    end)

    it("clamps a negative delay to zero", function()
      local ex, origin = exchange()
      -- the server claims it held the request longer than our whole round trip took
      local r = assert(ex:validate(reply(origin, 0, 2 ^ -7), MONO + 2 ^ -9, T1 + 2 ^ -9))
      assert.equal(0, r.delay)
      assert.equal(r.root_distance, r.uncertainty)
    end)

    local boundary = pkt.ERA_ROLLOVER
    local cases = {
      { "local and server both straddle the 2036 rollover", boundary - 2 ^ -9, 0 },
      { "local before the rollover, server 4 years after it", boundary - 2 ^ 25, 2 ^ 27 },
      { "local after the rollover, server 4 years before it", boundary + 2 ^ 25, -(2 ^ 27) },
      { "local just after the rollover, server just before", boundary + 2 ^ -10, -(2 ^ -8) },
    }
    for _, case in ipairs(cases) do
      it("is era-safe: " .. case[1], function()
        local t1, offset, rtt = case[2], case[3], 2 ^ -8
        local ex, request = core.sntp_request()
        ex:sent(MONO, t1)
        local t2 = t1 + offset + 2 ^ -10
        local t3 = t2 + 2 ^ -11
        local data = pkt.reply({ origin = pkt.origin_of(request), t2 = t2, t3 = t3 })
        local r = assert(ex:validate(data, MONO + rtt, t1 + rtt))
        assert.equal(((t2 - t1) + (t3 - (t1 + rtt))) / 2, r.offset)
        assert.equal(rtt - 2 ^ -11, r.delay)
      end)
    end

    it("sees the 32-bit seconds wrap on the wire in the era case", function()
      local b = pkt.timestamp(pkt.ERA_ROLLOVER - 2 ^ -9)
      local a = pkt.timestamp(pkt.ERA_ROLLOVER + 2 ^ -9)
      assert.equal(4294967295, pkt.read32(b, 1))
      assert.equal(0, pkt.read32(a, 1))
    end)
  end)

  describe("validation", function()
    local function check(over, kind, pattern, opts)
      opts = opts or {}
      local ex, origin = exchange(opts.limit)
      local fields = { origin = origin, t2 = T1 + 2 ^ -10, t3 = T1 + 2 ^ -9 }
      for k, v in pairs(over) do fields[k] = v end
      local data = opts.data or pkt.reply(fields)
      local res, msg, k, code = ex:validate(data, MONO + 2 ^ -8, opts.wall4 or (T1 + 2 ^ -8))
      assert.is_nil(res)
      assert.equal(kind, k)
      assert.matches(pattern, msg)
      return code
    end

    it("treats a reply that does not echo our transmit value as bogus", function()
      check({ origin = string.rep("\1", 8) }, "bogus", "does not echo our transmit timestamp")
    end)

    it("treats a short datagram as bogus: it cannot be authenticated", function()
      local ex, origin = exchange()
      local full = reply(origin, 0, 0)
      local res, msg, kind = ex:validate(full:sub(1, 47), MONO + 1e-3, T1 + 1e-3)
      assert.is_nil(res)
      assert.equal("bogus", kind)
      assert.equal("short reply (47 bytes, need 48)", msg)
    end)

    it("accepts a reply longer than 48 bytes (extension fields, MAC) on its first 48", function()
      local ex, origin = exchange()
      assert.is_table(ex:validate(reply(origin, 0, 0) .. string.rep("\0", 20), MONO + 1e-3, T1 + 1e-3))
    end)

    it("rejects a reply that is not in server mode", function()
      check({ mode = 3 }, "protocol", "mode 3, expected 4")
      check({ mode = 5 }, "protocol", "mode 5, expected 4")
    end)

    it("accepts versions 3 and 4 only", function()
      check({ version = 2 }, "protocol", "version 2, expected 3 or 4")
      check({ version = 5 }, "protocol", "version 5, expected 3 or 4")
      local ex, origin = exchange()
      assert.equal(3, assert(ex:validate(reply(origin, 0, 0, { version = 3 }), MONO + 1e-3, T1 + 1e-3)).version)
    end)

    it("reports a Kiss-o'-Death code and never uses its timestamps", function()
      for _, code in ipairs({ "DENY", "RSTR", "RATE", "XABC" }) do
        local got = check({ stratum = 0, leap = 3, refid = code, t2 = 0, t3 = 0 },
          "kiss_of_death", "kiss%-o'%-death " .. code)
        assert.equal(code, got)
      end
    end)

    it("sanitises a kiss code that is not printable", function()
      assert.equal("A?B", check({ stratum = 0, refid = "A\nB\0" }, "kiss_of_death", "A%?B"))
    end)

    it("rejects an unsynchronised server: leap indicator 3", function()
      check({ leap = 3 }, "unsynchronised", "leap indicator 3")
    end)

    it("rejects an unsynchronised server: stratum 16 or more", function()
      check({ stratum = 16 }, "unsynchronised", "stratum 16")
      check({ stratum = 200 }, "unsynchronised", "stratum 200")
    end)

    it("rejects a zero transmit or receive timestamp", function()
      check({ t3_raw = string.rep("\0", 8) }, "protocol", "zero transmit timestamp")
      check({ t2_raw = string.rep("\0", 8) }, "protocol", "zero receive timestamp")
    end)

    it("rejects a receive timestamp after the transmit timestamp", function()
      check({ t2 = T1 + 0.5, t3 = T1 }, "protocol", "receive timestamp is 0.5")
    end)

    it("rejects a root distance above the default limit of 1 s", function()
      check({ root_delay = 1, root_dispersion = 0.5 + 2 ^ -10 }, "unsynchronised",
        "root distance 1.000977 s exceeds the limit 1.000000 s")
      local ex, origin = exchange()
      assert.is_table(ex:validate(reply(origin, 0, 0, { root_delay = 1, root_dispersion = 0.5 }),
        MONO + 1e-3, T1 + 1e-3))
    end)

    it("applies a configured root distance limit", function()
      check({ root_dispersion = 0.02 }, "unsynchronised", "exceeds the limit 0.010000 s", { limit = 0.01 })
    end)

    it("reads root delay as unsigned: a set top bit is a huge delay, not a negative one", function()
      check({ root_delay_raw = 0x80000000 }, "unsynchronised", "root distance 16384")
    end)

    it("rejects an exchange during which the local wall clock stepped", function()
      check({}, "unsynchronised", "local wall clock stepped", { wall4 = T1 + 2 })
      check({}, "unsynchronised", "local wall clock stepped", { wall4 = T1 - 2 })
    end)

    it("renders a stratum 1 reference id as text", function()
      local ex, origin = exchange()
      local r = assert(ex:validate(reply(origin, 0, 0, { stratum = 1, refid = "GPS\0" }), MONO + 1e-3, T1 + 1e-3))
      assert.equal("GPS", r.refid)
      assert.equal(1, r.stratum)
    end)
  end)

  describe("object", function()
    it("has a name and a tostring without its random value", function()
      local ex, request = core.sntp_request()
      local s = tostring(ex)
      assert.matches("^skewguard.sntp_exchange{armed}: ", s)
      assert.is_nil(s:find(request:sub(41, 48), 1, true))
      ex:sent(MONO, T1)
      assert.matches("{sent}", tostring(ex))
    end)

    it("closes idempotently and refuses use afterwards", function()
      local ex = core.sntp_request()
      ex:close()
      ex:close()
      assert.matches("{closed}", tostring(ex))
      assert.has_error(function() ex:sent(MONO, T1) end)
      assert.has_error(function() ex:packet() end)
    end)

    it("rejects non-finite clock readings", function()
      local ex = core.sntp_request()
      assert.has_error(function() ex:sent(0 / 0, T1) end)
      assert.has_error(function() ex:sent(MONO, 1 / 0) end)
    end)

    if _VERSION == "Lua 5.4" then
      it("closes as a to-be-closed variable (Lua 5.4)", function()
        local seen = assert(load([[
          local core = ...
          local keep
          do
            local ex <close> = core.sntp_request()
            keep = ex
          end
          return tostring(keep)
        ]]))(core)
        assert.matches("{closed}", seen)
      end)
    end
  end)
end)
