-- skewguard.sntp and the blocking C query against a real SNTP responder process on
-- loopback (spec/support/sntp_responder.py), case by case.
local core = require "skewguard.core"
local sntp = require "skewguard.sntp"
local errors = require "skewguard.errors"
local responder = require "support.sntp_server"
local socket = require "socket"

local OFFSET = 123.456789

describe("sntp against a loopback responder", function()
  local server, other

  setup(function()
    server = responder.start()
    other = responder.start()
  end)

  teardown(function()
    if server then server:stop() end
    if other then other:stop() end
  end)

  before_each(function()
    sntp.reset()
    server:set({ offset = OFFSET })
    other:set({ offset = OFFSET })
  end)

  local function query(opts, host)
    opts = opts or {}
    opts.port = opts.port or server.port
    opts.timeout = opts.timeout or 1
    return sntp.query(host or "127.0.0.1", opts)
  end

  local function expect_error(kind, opts, host)
    local t0 = core.monotonic()
    local res, err = query(opts, host)
    assert.is_nil(res)
    assert.is_true(errors.is(err, kind), "expected " .. kind .. ", got " .. tostring(err))
    assert.matches("SNTP server 127%.0%.0%.1 port " .. (opts and opts.port or server.port), err.message)
    return err, core.monotonic() - t0
  end

  describe("measures", function()
    it("a known offset (+123.456789 s) within its stated uncertainty", function()
      local r = assert(query())
      assert.is_true(math.abs(r.skew + OFFSET) <= r.uncertainty,
        string.format("skew %.9f, uncertainty %.9f", r.skew, r.uncertainty))
      assert.is_true(r.uncertainty < 0.005)
      assert.equal(4, r.samples)
      assert.equal(4, server:stats().requests)
      assert.equal("127.0.0.1", r.server)
      assert.equal("127.0.0.1", r.host)
      assert.equal(server.port, r.port)
      assert.equal(2, r.stratum)
      assert.equal(0, r.leap)
      assert.equal("127.0.0.1", r.refid)
    end)

    it("a server that holds 5 ms between its receive and transmit stamps: the hold is not delay", function()
      server:set({ offset = OFFSET, hold = 0.005 })
      local r = assert(query({ samples = 1 }))
      assert.is_true(r.rtt >= 0.005, "round trip " .. r.rtt)
      assert.is_true(r.delay < r.rtt - 0.004, string.format("delay %.6f, rtt %.6f", r.delay, r.rtt))
      assert.is_true(math.abs(r.skew + OFFSET) <= r.uncertainty)
    end)

    it("the genuine reply when a spoofed one (wrong origin, 999 s off) arrives first", function()
      server:set({ offset = OFFSET, spoof = "first" })
      local r = assert(query({ samples = 2 }))
      assert.is_true(math.abs(r.skew + OFFSET) <= r.uncertainty, "skew " .. r.skew)
      local ex = core.sntp_request()
      local raw = assert(core.sntp_query(ex, "127.0.0.1", server.port, 1))
      assert.equal(1, raw.bogus)
      assert.is_true(math.abs(raw.skew + OFFSET) <= raw.uncertainty)
    end)

    it("across the 2036 era rollover (server stamps on both sides of it)", function()
      server:set({ era = true, hold = 0.004 })
      local r = assert(query({ samples = 1 }))
      local st = server:stats()
      assert.equal(0xffffffff, st.t2_seconds)
      assert.equal(0, st.t3_seconds)
      assert.is_true(st.offset > 9 * 365 * 86400) -- the server is years ahead of us
      assert.is_true(math.abs(r.skew + st.offset) <= r.uncertainty,
        string.format("skew %.6f, expected %.6f", r.skew, -st.offset))
    end)

    it("over IPv6", function()
      local v6 = responder.start("::1")
      local ok, err = pcall(function()
        v6:set({ offset = OFFSET })
        local r = assert(sntp.query("::1", { port = v6.port, samples = 1 }))
        assert.equal("::1", r.server)
        assert.is_true(math.abs(r.skew + OFFSET) <= r.uncertainty)
      end)
      v6:stop()
      assert(ok, err)
    end)

    it("with the minimum-delay sample of the burst", function()
      local delays = {}
      local r = assert(query({ samples = 4, transport = function(ex, host, port, timeout)
        local res, msg, kind = core.sntp_query(ex, host, port, timeout)
        if res then delays[#delays + 1] = res.delay end
        return res, msg, kind
      end }))
      assert.equal(4, #delays)
      assert.equal(math.min(delays[1], delays[2], delays[3], delays[4]), r.delay)
    end)

    it("and feeds the skew estimator the interval skew ± uncertainty", function()
      local estimator = require("skewguard.skew").new()
      local r = assert(query({ estimator = estimator }))
      assert.equal(1, estimator:samples())
      assert.same({ "sntp" }, estimator:sources())
      local lo, hi = estimator:bounds()
      -- the estimator widens by its drift bound (50 ppm) for the sample's age: nanoseconds here
      assert.is_true(math.abs(lo - (r.skew - r.uncertainty)) < 1e-6, "lo " .. lo)
      assert.is_true(math.abs(hi - (r.skew + r.uncertainty)) < 1e-6, "hi " .. hi)
      assert.is_true(lo <= -OFFSET and -OFFSET <= hi)
      assert.is_true(math.abs(estimator:skew() + OFFSET) <= r.uncertainty)
    end)
  end)

  describe("rejects", function()
    it("only spoofed replies: bogus, after waiting out the timeout", function()
      server:set({ spoof = "only" })
      local err, took = expect_error("bogus", { timeout = 0.2 })
      assert.matches("ignored 1 bogus datagram", err.message)
      assert.is_true(took >= 0.19, "gave up after " .. took)
    end)

    it("its own request reflected back", function()
      server:set({ echo = true })
      expect_error("bogus", { timeout = 0.2 })
    end)

    it("a short reply", function()
      server:set({ short = 40 })
      local err = expect_error("bogus", { timeout = 0.2 })
      assert.matches("short reply %(40 bytes, need 48%)", err.message)
    end)

    it("leap indicator 3", function()
      server:set({ leap = 3 })
      assert.matches("leap indicator 3", expect_error("unsynchronised").message)
      assert.equal(1, server:stats().requests) -- an unfit server ends the burst
    end)

    it("stratum 16", function()
      server:set({ stratum = 16 })
      assert.matches("stratum 16", expect_error("unsynchronised").message)
    end)

    it("mode 3", function()
      server:set({ mode = 3 })
      assert.matches("mode 3", expect_error("protocol").message)
    end)

    it("version 2", function()
      server:set({ version = 2 })
      assert.matches("version 2", expect_error("protocol").message)
    end)

    it("a zero transmit timestamp", function()
      server:set({ zero_transmit = true })
      assert.matches("zero transmit timestamp", expect_error("protocol").message)
    end)

    it("a receive timestamp after the transmit timestamp", function()
      server:set({ receive_after_transmit = true })
      assert.matches("receive timestamp is 0%.5", expect_error("protocol").message)
    end)

    it("a large root distance, unless the limit is raised", function()
      server:set({ offset = OFFSET, root_delay = 2, root_dispersion = 0.5 })
      assert.matches("root distance 1%.5", expect_error("unsynchronised").message)
      local r = assert(query({ max_root_distance = 2 }))
      assert.equal(1.5, r.root_distance)
      assert.is_true(r.uncertainty >= 1.5)
    end)

    it("a silent server: timeout, on time", function()
      server:set({ silent = true })
      local err, took = expect_error("timeout", { timeout = 0.2 })
      assert.matches("no reply within 0%.2 s", err.message)
      assert.is_true(took >= 0.19 and took < 0.5, "took " .. took)
      assert.equal(1, server:stats().requests)
    end)

    it("a closed port: network error", function()
      local probe = assert(socket.udp())
      assert(probe:setsockname("127.0.0.1", 0))
      local _, port = probe:getsockname()
      port = tonumber(port)
      probe:close()
      assert.matches("refused", expect_error("network", { port = port, timeout = 0.5 }).message)
    end)

    it("a name that does not resolve: network error naming it", function()
      local _, err = sntp.query("no-such-host.invalid", { timeout = 0.5, port = server.port })
      assert.is_true(errors.is(err, "network"), tostring(err))
      assert.matches("SNTP server no%-such%-host%.invalid port %d+: cannot resolve", err.message)
    end)
  end)

  describe("Kiss-o'-Death", function()
    for _, code in ipairs({ "DENY", "RSTR" }) do
      it(code .. ": never asks that server again in this process, under any name", function()
        server:set({ kod = code })
        local err = expect_error("kiss_of_death")
        assert.equal(code, err.code)
        assert.equal(1, server:stats().requests)
        server:set({ offset = OFFSET }) -- even once it would answer again
        err = expect_error("kiss_of_death")
        assert.equal(code, err.code)
        assert.matches("refused us earlier %(kiss%-o'%-death " .. code .. "%); this process does not ask it again",
          err.message)
        local _, by_name = sntp.query("localhost", { port = server.port })
        assert.is_true(errors.is(by_name, "kiss_of_death"), tostring(by_name))
        assert.equal(code, by_name.code)
        assert.equal(0, server:stats().requests)
        sntp.reset()
        assert(query())
        assert.equal(4, server:stats().requests)
      end)
    end

    it("DENY: a list moves on to the next server", function()
      server:set({ kod = "DENY" })
      local r = assert(sntp.query({ "127.0.0.1", { host = "127.0.0.1", port = other.port } },
        { port = server.port }))
      assert.equal(other.port, r.port)
      assert.is_true(math.abs(r.skew + OFFSET) <= r.uncertainty)
      assert.equal(1, server:stats().requests)
    end)

    it("RATE: backs off exponentially, then asks again", function()
      server:set({ kod = "RATE" })
      local err = expect_error("kiss_of_death", { rate_backoff = 0.1 })
      assert.equal("RATE", err.code)
      assert.equal(1, server:stats().requests)
      err = expect_error("rate_limited", { rate_backoff = 0.1 })
      assert.equal("RATE", err.code)
      assert.is_true(err.retry_after > 0.05 and err.retry_after <= 0.1, "retry after " .. err.retry_after)
      assert.equal(1, server:stats().requests)
      socket.sleep(0.11)
      expect_error("kiss_of_death", { rate_backoff = 0.1 }) -- asked again, refused again
      assert.equal(2, server:stats().requests)
      err = expect_error("rate_limited", { rate_backoff = 0.1 })
      assert.is_true(err.retry_after > 0.15 and err.retry_after <= 0.2, "doubled: " .. err.retry_after)
      socket.sleep(0.21)
      server:set({ offset = OFFSET })
      assert(query({ rate_backoff = 0.1 }))
      server:set({ kod = "RATE" })
      expect_error("kiss_of_death", { rate_backoff = 0.1 })
      err = expect_error("rate_limited", { rate_backoff = 0.1 })
      assert.is_true(err.retry_after <= 0.1, "a success resets the backoff: " .. err.retry_after)
    end)

    it("RATE: a list moves on to the next server", function()
      server:set({ kod = "RATE" })
      local r = assert(sntp.query({ "127.0.0.1", { host = "localhost", port = other.port } },
        { port = server.port }))
      assert.equal("localhost", r.host)
      assert.equal(other.port, r.port)
    end)

    it("an experimental X code is ignored: no lasting effect, the burst goes on", function()
      server:set({ kod = "XFOO" })
      local err = expect_error("kiss_of_death")
      assert.equal("XFOO", err.code)
      assert.equal(4, server:stats().requests)
      server:set({ offset = OFFSET })
      assert(query())
    end)
  end)

  describe("server lists", function()
    it("are tried in order until one answers validly", function()
      server:set({ silent = true })
      local r = assert(sntp.query({ "127.0.0.1", { host = "localhost", port = other.port } },
        { port = server.port, timeout = 0.1 }))
      assert.equal("localhost", r.host)
      assert.equal(other.port, r.port)
      assert.equal(1, server:stats().requests)
    end)

    it("report every failure, typed by the last, when none answers", function()
      server:set({ leap = 3 })
      other:set({ stratum = 16 })
      local res, err2 = sntp.query({ "127.0.0.1", { host = "localhost", port = other.port } },
        { port = server.port })
      assert.is_nil(res)
      assert.is_true(errors.is(err2, "unsynchronised"))
      assert.equal(2, #err2.errors)
      assert.matches("leap indicator 3", err2.errors[1].message)
      assert.matches("stratum 16", err2.errors[2].message)
      assert.matches("SNTP server 127%.0%.0%.1 port %d+: .*; SNTP server localhost %(127%.0%.0%.1%) port %d+",
        err2.message)
    end)
  end)

  describe("over a transport written in Lua (LuaSocket), as a cosocket one would be", function()
    local transport = sntp.udp_transport(socket.udp, 1)

    it("measures the known offset", function()
      local r = assert(query({ transport = transport }))
      assert.is_true(math.abs(r.skew + OFFSET) <= r.uncertainty)
      assert.equal(4, r.samples)
      assert.equal("127.0.0.1", r.server)
    end)

    it("ignores a spoofed reply and takes the genuine one behind it", function()
      server:set({ offset = OFFSET, spoof = "first" })
      local r = assert(query({ transport = transport, samples = 1 }))
      assert.equal(1, r.bogus)
      assert.is_true(math.abs(r.skew + OFFSET) <= r.uncertainty)
    end)

    it("gives up on spoofed replies only at the deadline", function()
      server:set({ spoof = "only" })
      local err, took = expect_error("bogus", { transport = transport, timeout = 0.2 })
      assert.matches("ignored 1 bogus datagram", err.message)
      assert.is_true(took >= 0.19, "gave up after " .. took)
    end)

    it("times out on a silent server", function()
      server:set({ silent = true })
      expect_error("timeout", { transport = transport, timeout = 0.1 })
    end)

    it("holds a DENY against the server and does not ask it again", function()
      server:set({ kod = "DENY" })
      assert.equal("DENY", expect_error("kiss_of_death", { transport = transport }).code)
      server:set({ offset = OFFSET })
      local _, err = sntp.query("localhost", { port = server.port, transport = transport })
      assert.is_true(errors.is(err, "kiss_of_death"), tostring(err))
      assert.equal(0, server:stats().requests)
    end)

    it("rejects an unsynchronised server", function()
      server:set({ leap = 3 })
      expect_error("unsynchronised", { transport = transport })
    end)
  end)

  describe("options", function()
    it("raise on misuse", function()
      assert.has_error(function() sntp.query("127.0.0.1", { bogus_option = 1 }) end,
        "skewguard.sntp: unknown option bogus_option")
      assert.has_error(function() sntp.query("127.0.0.1", { port = 0 }) end)
      assert.has_error(function() sntp.query("127.0.0.1", { port = 1.5 }) end)
      assert.has_error(function() sntp.query("127.0.0.1", { samples = 0 }) end)
      assert.has_error(function() sntp.query("127.0.0.1", { timeout = 0 }) end)
      assert.has_error(function() sntp.query("127.0.0.1", { timeout = "1" }) end)
      assert.has_error(function() sntp.query("127.0.0.1", { estimator = {} }) end)
      assert.has_error(function() sntp.query("127.0.0.1", { transport = "carrier-pigeon" }) end)
      assert.has_error(function() sntp.query({}, {}) end)
      assert.has_error(function() sntp.query({ "a", 5 }, {}) end)
      assert.has_error(function() sntp.query({ { host = "a", port = 0 } }, {}) end)
      assert.has_error(function() core.sntp_query(core.sntp_request(), "127.0.0.1", 0, 1) end)
      assert.has_error(function() core.sntp_query(core.sntp_request(), "127.0.0.1", 123, 0) end)
    end)
  end)
end)
