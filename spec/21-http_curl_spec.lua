-- The libcurl transport against a real nginx on loopback.
local core = require "skewguard.core"
local curl = require "skewguard.transport.curl"
local nginx = require "support.loopback_nginx"

local LOCATIONS = [[
location = /hello {
  add_header X-Twice one;
  add_header X-Twice two;
  add_header X-Correlation abc;
  return 200 "hello world";
}
location = /echo {
  echo_read_request_body;
  echo "$request_method|$http_authorization|$http_content_type|$content_length|$http_x_empty";
  echo_request_body;
}
location = /agent {
  echo_read_request_body;
  echo "$request_method|$http_user_agent|$http_expect|$content_length";
}
location = /gz {
  gzip on;
  gzip_min_length 1;
  gzip_types text/plain;
  default_type text/plain;
  echo "$http_accept_encoding";
  echo_duplicate 200 "z";
}
location = /slow { echo_sleep 3; echo "late"; }
location = /chunked { echo_duplicate 5000 "0123456789"; }
location = /status { return 503 '{"message":"down"}'; }
]]

describe("libcurl transport", function()
  local server
  setup(function()
    server = nginx.start({ locations = LOCATIONS,
      files = { ["big.bin"] = string.rep("x", 8 * 1024 * 1024 + 100) } })
  end)
  teardown(function() if server then server.stop() end end)

  it("returns status, lower-case headers with repeats kept, body and both clocks", function()
    local t = curl.new()
    local m0, w0 = core.now()
    local res = assert(t:request({ url = server.url .. "/hello" }))
    local m1, w1 = core.now()
    assert.equal(200, res.status)
    assert.equal("hello world", res.body)
    assert.equal("abc", res.headers["x-correlation"])
    assert.equal("one, two", res.headers["x-twice"])
    local twice = {}
    for _, h in ipairs(res.header_list) do if h[1] == "x-twice" then twice[#twice + 1] = h[2] end end
    assert.same({ "one", "two" }, twice)
    assert.truthy(res.headers["date"]:match("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$"))
    assert.is_true(m0 <= res.t_send_mono and res.t_send_mono <= res.t_recv_mono and res.t_recv_mono <= m1)
    assert.is_true(w0 - 0.01 <= res.t_send_wall and res.t_recv_wall <= w1 + 0.01)
    assert.equal("1.1", res.http_version)
    t:close()
  end)

  it("reuses one connection across requests", function()
    local t = curl.new()
    local first = assert(t:request({ url = server.url .. "/hello" }))
    assert.equal(1, first.new_connections)
    for _ = 1, 5 do
      local res = assert(t:request({ url = server.url .. "/hello" }))
      assert.equal(0, res.new_connections)
    end
    t:close()
  end)

  it("sends method, headers and body", function()
    local t = curl.new()
    local res = assert(t:request({ method = "POST", url = server.url .. "/echo", body = "a=1&b=2",
      headers = { Authorization = "Basic Zm9vOmJhcg==", ["Content-Type"] = "application/x-www-form-urlencoded",
        ["X-Empty"] = "" } }))
    assert.equal("POST|Basic Zm9vOmJhcg==|application/x-www-form-urlencoded|7|\na=1&b=2", res.body)
    res = assert(t:request({ method = "PUT", url = server.url .. "/echo", body = "{}" }))
    assert.equal("PUT", res.body:match("^(%u+)|"))
    res = assert(t:request({ method = "DELETE", url = server.url .. "/echo" }))
    assert.equal("DELETE", res.body:match("^(%u+)|"))
    res = assert(t:request({ method = "GET", url = server.url .. "/status" }))
    assert.equal(503, res.status)
    t:close()
  end)

  it("aborts a body beyond the limit with kind too_large (known length and chunked)", function()
    local t = curl.new()
    local res, err = t:request({ url = server.url .. "/big.bin" })
    assert.is_nil(res)
    assert.equal("too_large", err.kind)
    local small = curl.new({ max_body = 1000 })
    res, err = small:request({ url = server.url .. "/chunked" })
    assert.is_nil(res)
    assert.equal("too_large", err.kind)
    assert.truthy(err.message:find("1000 byte limit", 1, true))
    -- the same handle keeps working after an aborted transfer
    res = assert(small:request({ url = server.url .. "/hello" }))
    assert.equal(200, res.status)
    t:close()
    small:close()
  end)

  it("times out with kind timeout within the timeout", function()
    local t = curl.new()
    local t0 = core.monotonic()
    local res, err = t:request({ url = server.url .. "/slow", timeout = 0.3 })
    local elapsed = core.monotonic() - t0
    assert.is_nil(res)
    assert.equal("timeout", err.kind)
    assert.is_true(elapsed >= 0.29 and elapsed < 1.5, elapsed)
    t:close()
  end)

  it("reports refused connections and unknown hosts as kind network, without header values", function()
    local t = curl.new({ timeout = 3 })
    local res, err = t:request({ url = "http://127.0.0.1:" .. nginx.free_port() .. "/x",
      headers = { Authorization = "Bearer VERYSECRETTOKEN" } })
    assert.is_nil(res)
    assert.equal("network", err.kind)
    assert.is_nil(tostring(err):find("VERYSECRETTOKEN", 1, true))
    res, err = t:request({ url = "http://no-such-host.invalid/x" })
    assert.is_nil(res)
    assert.equal("network", err.kind)
    t:close()
  end)

  it("raises on misuse: header injection, bad method, bad options", function()
    local t = curl.new()
    assert.has_error(function()
      t:request({ url = server.url .. "/echo", headers = { ["X-A"] = "v\r\nX-Evil: 1" } })
    end)
    assert.has_error(function() t:request({ url = server.url .. "/echo", method = "get" }) end)
    assert.has_error(function() t:request({}) end)
    assert.has_error(function() curl.new({ timout = 3 }) end)
    assert.has_error(function() curl.new({ timeout = -1 }) end)
    t:close()
    t:close()
    assert.has_error(function() t:request({ url = server.url .. "/hello" }) end)
    assert.equal("skewguard.http{closed}", tostring(t.http))
  end)

  it("rejects unknown schemes", function()
    local t = curl.new()
    local res, err = t:request({ url = "file:///etc/passwd" })
    assert.is_nil(res)
    assert.equal("config", err.kind)
    t:close()
  end)

  it("sends User-Agent skewguard unless the transport or the request names another", function()
    local t = curl.new()
    assert.equal("GET|skewguard||\n", assert(t:request({ url = server.url .. "/agent" })).body)
    assert.equal("GET|mine/1||\n", assert(t:request({ url = server.url .. "/agent",
      headers = { ["User-Agent"] = "mine/1" } })).body)
    t:close()
    t = curl.new({ user_agent = "theirs/2" })
    assert.equal("GET|theirs/2||\n", assert(t:request({ url = server.url .. "/agent" })).body)
    t:close()
  end)

  it("offers the encodings libcurl decodes, once, and hands back the decoded body", function()
    local t = curl.new()
    local res = assert(t:request({ url = server.url .. "/gz" }))
    assert.equal("gzip", res.headers["content-encoding"])
    local offered, rest = res.body:match("^([^\n]*)\n(.*)$")
    assert.equal(string.rep("z", 200), rest)
    assert.truthy(offered:find("gzip", 1, true))
    assert.is_nil(offered:find("gzip.*gzip"))
    res = assert(t:request({ url = server.url .. "/gz", headers = { ["Accept-Encoding"] = "identity" } }))
    assert.is_nil(res.headers["content-encoding"])
    assert.equal("identity\n" .. string.rep("z", 200), res.body)
    t:close()
  end)

  it("keeps each request's method and body apart on one reused handle", function()
    local t = curl.new()
    local url = server.url .. "/agent"
    local function call(method, body) return assert(t:request({ method = method, url = url, body = body })) end
    local get = "GET|skewguard||\n"
    assert.equal(get, call("GET").body)
    assert.equal("POST|skewguard||3\n", call("POST", "abc").body)
    assert.equal(get, call("GET").body)
    assert.equal("", call("HEAD").body)
    assert.equal(get, call("GET").body)
    assert.equal("PUT|skewguard||2\n", call("PUT", "xy").body)
    assert.equal(get, call("GET").body)
    assert.equal("DELETE|skewguard||\n", call("DELETE").body)
    assert.equal(get, call("GET").body)
    assert.equal(get, call("GET").body)
    t:close()
  end)

  it("leaves out header_list when the request says header_list = false", function()
    local http = core.http()
    local res = assert(http:request({ url = server.url .. "/hello", header_list = false }))
    assert.is_nil(res.header_list)
    assert.equal("one, two", res.headers["x-twice"])
    local with_list = assert(http:request({ url = server.url .. "/hello" }))
    assert.is_true(#with_list.header_list >= 4, #with_list.header_list)
    assert.has_error(function() http:request({ url = server.url .. "/hello", header_list = 1 }) end,
      "skewguard.http: req.header_list must be a boolean")
    http:close()
  end)

  it("sleeps on the monotonic clock", function()
    local t = curl.new()
    local t0 = t:now()
    t:sleep(0.05)
    local dt = t:now() - t0
    assert.is_true(dt >= 0.05 and dt < 0.5, dt)
    t:close()
  end)
end)

describe("libcurl transport over TLS", function()
  local server
  setup(function() server = nginx.start({ tls = true, locations = 'location = /hello { return 200 "tls ok"; }' }) end)
  teardown(function() if server then server.stop() end end)

  it("refuses a self-signed certificate by default with kind tls", function()
    local t = curl.new()
    local res, err = t:request({ url = server.url .. "/hello" })
    assert.is_nil(res)
    assert.equal("tls", err.kind)
    t:close()
  end)

  it("succeeds with ca_file, over HTTP/2", function()
    local t = curl.new({ ca_file = server.ca_file })
    local res = assert(t:request({ url = server.url .. "/hello" }))
    assert.equal(200, res.status)
    assert.equal("tls ok", res.body)
    assert.equal("2", res.http_version)
    assert.is_true(res.time_appconnect > 0)
    res = assert(t:request({ url = server.url .. "/hello" }))
    assert.equal(0, res.new_connections)
    t:close()
  end)
end)
