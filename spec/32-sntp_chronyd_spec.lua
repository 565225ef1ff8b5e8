-- skewguard.sntp against a real NTP server: Debian's chronyd on loopback.
local sntp = require "skewguard.sntp"
local chronyd = require "support.chronyd"

describe("sntp against a real chronyd on loopback", function()
  local server

  setup(function()
    server = chronyd.start()
  end)

  teardown(function()
    if server then server:stop() end
  end)

  it("finds the local clock within delay/2 + 1 ms of chronyd's (which is the same clock)", function()
    sntp.reset()
    local r = assert(sntp.query("127.0.0.1", { port = server.port, timeout = 1 }))
    assert.is_true(math.abs(r.skew) <= r.delay / 2 + 0.001,
      string.format("skew %.9f s, delay %.9f s", r.skew, r.delay))
    assert.equal(4, r.samples)
    assert.equal(10, r.stratum) -- `local stratum 10`
    assert.equal(0, r.leap)
    assert.is_true(r.version == 4 or r.version == 3)
    assert.is_true(r.uncertainty >= math.abs(r.skew))
  end)

  it("gets the same answer over the Lua transport", function()
    sntp.reset()
    local transport = sntp.udp_transport(require("socket").udp)
    local r = assert(sntp.query("localhost", { port = server.port, transport = transport }))
    assert.is_true(math.abs(r.skew) <= r.delay / 2 + 0.001,
      string.format("skew %.9f s, delay %.9f s", r.skew, r.delay))
  end)
end)
