-- Both transports' send and receive instants must bracket the instant the server
-- stamped its Date: the skew estimator's intervals (and the doctor's sub-millisecond
-- probes) are only true if they do. The stand-in reports that instant exactly in
-- X-Standin-Stamp (printed to the microsecond, hence the 1 µs allowance).
local standin = require "support.standin"
local nginx = require "support.nginx"
local cjson = require "cjson"

local ROUNDING = 1e-6  -- both sides printed to the microsecond: 0.5 µs each

local function check(samples)
  local worst = math.huge
  for _, r in ipairs(samples) do
    local stamp = tonumber(r.headers["x-standin-stamp"])
    assert.truthy(stamp, "no X-Standin-Stamp")
    -- from inside nginx the instants come as exact strings (JSON would round them)
    local t_send = tonumber(r.t_send_wall_us) or r.t_send_wall
    local t_recv = tonumber(r.t_recv_wall_us) or r.t_recv_wall
    local before, after = stamp - t_send, t_recv - stamp
    worst = math.min(worst, before, after)
    assert.is_true(before >= -ROUNDING, ("stamp %.6f before t_send %.6f"):format(stamp, t_send))
    assert.is_true(after >= -ROUNDING, ("stamp %.6f after t_recv %.6f"):format(stamp, t_recv))
    assert.is_true(r.t_recv_mono - r.t_send_mono >= 0)
  end
  return worst
end

describe("transport timing against the server's Date stamp", function()
  local s
  setup(function() s = standin.start { offset = 0 } end)
  teardown(function() if s then s:stop() end end)

  it("libcurl: t_send <= stamp <= t_recv on every response", function()
    local t = require("skewguard.transport.curl").new { timeout = 5 }
    local samples = {}
    local n = os.getenv("SKEWGUARD_SLOW") and 50 or 500
    for i = 1, n do
      samples[i] = assert(t:request { method = "GET", url = s.url .. "/api/v2/organizations/me" })
    end
    check(samples)
    t:close()
  end)

  it("nginx cosockets: t_send <= stamp <= t_recv on every response", function()
    local client = nginx.start {
      ports = 1, workers = 1,
      http = function(c)
        return ("server { listen 127.0.0.1:%d; client_body_buffer_size 1m; location = /call { content_by_lua_block { "
          .. "require('support.ngx_driver').call() } } }"):format(c.port[1])
      end,
    }
    local ok, err = pcall(function()
      local requests = {}
      for i = 1, 200 do requests[i] = { method = "GET", url = s.url .. "/api/v2/organizations/me" } end
      local status, body = client:request("POST", "/call", cjson.encode({ requests = requests }))
      assert.equal(200, status, table.concat(client:errors(), "\n"))
      local results = cjson.decode(body).results
      assert.equal(200, #results)
      for _, r in ipairs(results) do assert.is_true(r.ok, r.message) end
      check(results)
    end)
    client:stop()
    assert(ok, err)
  end)
end)
