-- skewguard.transport.ngx against real nginx: an upstream nginx serves the
-- response shapes (spec/support/ngx_upstream.lua), a client nginx with ONE worker
-- runs the transport in content handlers (spec/support/ngx_driver.lua) and reports
-- results as JSON to this test process.
local cjson = require("cjson")
local nginx = require("support.nginx")

describe("skewguard.transport.ngx outside nginx", function()
  it("refuses to build without nginx cosockets", function()
    local ngx_transport = require("skewguard.transport.ngx")
    assert.has_error(function() ngx_transport.new() end,
      "skewguard.transport.ngx: needs nginx with the Lua module (ngx.socket.tcp); " ..
      "outside nginx use skewguard.transport.curl or skewguard.transport.default()")
  end)

  it("default() picks the libcurl transport", function()
    local transport = require("skewguard.transport")
    assert.is_nil(transport.nginx_phase())
    local t = transport.default({ timeout = 3 })
    assert.equal(require("skewguard.transport.curl").Transport, getmetatable(t))
    t:close()
  end)
end)

describe("skewguard.transport.ngx in nginx", function()
  local dir, upstream, client
  local cert, key
  local PLAIN, TLS, STALE, DROP -- upstream ports
  local TRUSTING, UNTRUSTING     -- client ports

  setup(function()
    dir = nginx.tmpdir()
    cert, key = dir .. "/cert.pem", dir .. "/key.pem"
    assert(nginx.run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 " ..
      "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 " ..
      "-keyout " .. nginx.sh_quote(key) .. " -out " .. nginx.sh_quote(cert) .. " >/dev/null 2>&1"),
      "openssl could not make a test certificate")
    upstream = nginx.start{
      ports = 4, workers = 1,
      http = function(c)
        PLAIN, TLS, STALE, DROP = c.port[1], c.port[2], c.port[3], c.port[4]
        local loc = "location / { content_by_lua_block { require('support.ngx_upstream').handle() } }"
        return table.concat({
          "lua_shared_dict hits 1m;",
          "keepalive_requests 1000;",
          ("server { listen 127.0.0.1:%d; listen [::1]:%d; %s }"):format(PLAIN, PLAIN, loc),
          ("server { listen 127.0.0.1:%d ssl; ssl_certificate %s; ssl_certificate_key %s; %s }")
            :format(TLS, cert, key, loc),
          ("server { listen 127.0.0.1:%d; %s }"):format(STALE, loc),
          ("server { listen 127.0.0.1:%d; %s }"):format(DROP, loc),
        }, "\n")
      end,
    }
    client = nginx.start{
      ports = 2, workers = 1,
      http = function(c)
        TRUSTING, UNTRUSTING = c.port[1], c.port[2]
        local locs = [[
          location = /call { content_by_lua_block { require('support.ngx_driver').call() } }
          location = /via_transport { content_by_lua_block { require('support.ngx_driver').via_transport() } }
          location = /via_blocking { content_by_lua_block { require('support.ngx_driver').via_blocking() } }
          location = /default { content_by_lua_block { require('support.ngx_driver').default_here() } }
          location = /probe { content_by_lua_block { require('support.ngx_driver').probe() } }
          location = /from_init { content_by_lua_block { require('support.ngx_driver').from_init() } }
          location = /timer { content_by_lua_block { require('support.ngx_driver').in_timer() } }
        ]]
        return table.concat({
          "lua_shared_dict probe 1m;",
          "lua_socket_log_errors off;",
          "init_worker_by_lua_block { require('support.ngx_driver').probe_init_worker() }",
          ("server { listen 127.0.0.1:%d; lua_ssl_trusted_certificate %s; lua_ssl_verify_depth 2; %s }")
            :format(TRUSTING, cert, locs),
          ("server { listen 127.0.0.1:%d; %s }"):format(UNTRUSTING, locs),
        }, "\n")
      end,
    }
  end)

  teardown(function()
    if client then client:stop() end
    if upstream then upstream:stop() end
    nginx.rmtree(dir)
  end)

  local function up(path, port) return ("http://127.0.0.1:%d%s"):format(port or PLAIN, path) end

  -- Runs requests through the transport inside the client nginx; returns results.
  local function call(requests, opts, port)
    local status, body = client:request("POST", "/call", cjson.encode({ opts = opts or {}, requests = requests }),
      port or TRUSTING)
    assert.equal(200, status, body)
    local out = cjson.decode(body)
    assert.is_nil(out.raised)
    return out.results
  end

  local function one(req, opts, port)
    return call({ req }, opts, port)[1]
  end

  local function assert_error(r, kind)
    assert.is_false(r.ok, "expected an error, got " .. cjson.encode(r))
    assert.is_true(r.is_error)
    assert.equal(kind, r.kind, r.message)
  end

  describe("responses", function()
    it("reads a Content-Length body with status, headers and timings", function()
      local r = one({ url = up("/cl") })
      assert.is_true(r.ok, r.message)
      assert.equal(200, r.status)
      assert.equal("hello", r.body)
      assert.equal("5", r.headers["content-length"])
      assert.equal("text/plain", r.headers["content-type"])
      assert.is_true(r.t_before <= r.t_send_mono and r.t_send_mono <= r.t_recv_mono
        and r.t_recv_mono <= r.t_after)
      assert.is_true(r.t_send_wall <= r.t_recv_wall)
      assert.is_true(r.t_before <= r.t_start_mono and r.t_start_mono <= r.t_send_mono)
      assert.equal("1.1", r.http_version)
      assert.equal(r.reused == 0 and 1 or 0, r.new_connections)
    end)

    it("brackets the server's Date header between send and receive wall times", function()
      local r = one({ url = up("/slow?d=0.05") })
      assert.is_true(r.ok, r.message)
      assert.is_number(r.date)
      -- Same host, same clock: the second the server stamped lies in [t_send, t_recv].
      assert.is_true(r.date + 1 > r.t_send_wall, cjson.encode(r))
      assert.is_true(r.date <= r.t_recv_wall, cjson.encode(r))
    end)

    it("takes t_recv at the status line, not after the body", function()
      local r = one({ url = up("/slowbody?d=0.4") })
      assert.is_true(r.ok, r.message)
      assert.equal("late", r.body)
      assert.is_true(r.t_recv_mono - r.t_send_mono < 0.3, cjson.encode(r))
      assert.is_true(r.t_after - r.t_recv_mono >= 0.35, cjson.encode(r))
      -- and t_send only once the server could have seen the whole request
      local s = one({ url = up("/slow?d=0.3") })
      assert.is_true(s.t_recv_mono - s.t_send_mono >= 0.29, cjson.encode(s))
    end)

    it("reads chunked bodies", function()
      local r = one({ url = up("/chunked?n=3000") })
      assert.is_true(r.ok, r.message)
      assert.equal("chunked", r.headers["transfer-encoding"])
      assert.equal(3000, r.body_length)
      assert.equal(string.rep("a", 1000) .. string.rep("b", 1000) .. string.rep("c", 1000), r.body)
    end)

    it("reads bodies delimited by connection close", function()
      local r = one({ url = up("/eof?n=5000") })
      assert.is_true(r.ok, r.message)
      assert.equal(string.rep("e", 5000), r.body)
    end)

    it("reads no body for HEAD, 204 and 304, and keeps the connection usable", function()
      local rs = call({
        { method = "HEAD", url = up("/cl") },
        { url = up("/nocontent") },
        { url = up("/notmodified") },
        { url = up("/cl") },
      })
      for i, r in ipairs(rs) do assert.is_true(r.ok, i .. ": " .. tostring(r.message)) end
      assert.same({ 200, 204, 304, 200 }, { rs[1].status, rs[2].status, rs[3].status, rs[4].status })
      assert.equal("5", rs[1].headers["content-length"])
      assert.same({ "", "", "", "hello" }, { rs[1].body, rs[2].body, rs[3].body, rs[4].body })
      for i = 2, 4 do assert.equal(rs[i - 1].reused + 1, rs[i].reused) end
      assert.is_true(rs[1].elapsed < 1)
    end)

    it("keeps every value of a repeated header in header_list, joined in headers", function()
      local r = one({ url = up("/repeated") })
      assert.is_true(r.ok, r.message)
      assert.equal("one, two, three", r.headers["x-multi"])
      local values = {}
      for _, h in ipairs(r.header_list) do
        if h[1] == "x-multi" then values[#values + 1] = h[2] end
      end
      assert.same({ "one", "two", "three" }, values)
    end)

    it("sends Host, User-Agent, Content-Length and the caller's headers and body", function()
      local r = one({ method = "POST", url = up("/echo?x=1#frag"), body = "a=b&c=d",
        headers = { ["x-test"] = "yes", ["content-type"] = "application/x-www-form-urlencoded" } })
      assert.is_true(r.ok, r.message)
      local seen = cjson.decode(r.body)
      assert.equal("POST", seen.method)
      assert.equal("/echo?x=1", seen.uri)
      assert.equal("a=b&c=d", seen.body)
      assert.equal("127.0.0.1:" .. PLAIN, seen.headers.host)
      assert.matches("^skewguard/%S+$", seen.headers["user-agent"])
      assert.equal("7", seen.headers["content-length"])
      assert.equal("yes", seen.headers["x-test"])
      local empty = one({ method = "POST", url = up("/echo") })
      assert.equal("0", cjson.decode(empty.body).headers["content-length"])
    end)

    it("connects to localhost and IPv6 literals without a resolver", function()
      local r = one({ url = ("http://localhost:%d/echo"):format(PLAIN) })
      assert.is_true(r.ok, r.message)
      assert.equal("localhost:" .. PLAIN, cjson.decode(r.body).headers.host)
      local v6 = one({ url = ("http://[::1]:%d/echo"):format(PLAIN) })
      assert.is_true(v6.ok, v6.message)
      assert.equal("[::1]:" .. PLAIN, cjson.decode(v6.body).headers.host)
    end)
  end)

  describe("errors", function()
    it("times out within the request timeout", function()
      local r = one({ url = up("/slow?d=5"), timeout = 0.3 })
      assert_error(r, "timeout")
      assert.is_true(r.elapsed >= 0.29 and r.elapsed < 1.0, "elapsed " .. r.elapsed)
      -- The deadline covers the body too, not only the first byte.
      local b = one({ url = up("/slowbody?d=5"), timeout = 0.3 })
      assert_error(b, "timeout")
      assert.is_true(b.elapsed >= 0.29 and b.elapsed < 1.0, "elapsed " .. b.elapsed)
    end)

    it("reports a refused connection as a network error", function()
      local port = nginx.free_ports(1)[1]
      local r = one({ url = up("/cl", port) })
      assert_error(r, "network")
      assert.matches("refused", r.message)
    end)

    it("needs a resolver for other host names, and says so", function()
      local r = one({ url = "http://skewguard-test.invalid/" })
      assert_error(r, "network")
      assert.matches("resolver", r.message)
    end)

    it("rejects bad chunk framing, truncated bodies and garbage as protocol errors", function()
      local rs = call({
        { url = up("/badchunk") }, { url = up("/badchunk_crlf") }, { url = up("/truncated") },
        { url = up("/truncated_chunked") }, { url = up("/garbage") },
      })
      for _, r in ipairs(rs) do assert_error(r, "protocol") end
      assert.matches("chunk size", rs[1].message)
      assert.matches("CRLF", rs[2].message)
      assert.matches("5 of 100 bytes", rs[3].message)
      assert.matches("status line", rs[5].message)
    end)

    it("aborts bodies above max_body", function()
      local rs = call({ { url = up("/huge") } })
      assert_error(rs[1], "too_large")
      assert.is_true(rs[1].elapsed < 2)
      local small = call({ { url = up("/chunked?n=5000") }, { url = up("/eof?n=5000") },
        { url = up("/chunked?n=4000") } }, { max_body = 4000 })
      assert_error(small[1], "too_large")
      assert_error(small[2], "too_large")
      assert.is_true(small[3].ok, small[3].message)
      assert.equal(4000, small[3].body_length)
    end)

    it("does not retry a fresh connection closed without an answer", function()
      local r = one({ url = up("/drop", DROP) })
      assert_error(r, "network")
      local status, hits = upstream:get("/hits?name=drop")
      assert.equal(200, status)
      assert.equal("1", hits)
    end)

    it("raises on arguments that are programming errors", function()
      local rs = call({ { url = "ftp://127.0.0.1/" }, { url = up("/cl"), headers = { ["x-bad"] = "a\r\nb" } },
        { url = up("/cl"), method = "get" } })
      assert.matches("only http and https", rs[1].raised)
      assert.matches("x%-bad contains CR", rs[2].raised)
      assert.matches("method", rs[3].raised)
      local status, body = client:request("POST", "/call", cjson.encode({ opts = { colour = "red" }, requests = {} }),
        TRUSTING)
      assert.equal(200, status)
      assert.matches("unknown option colour", cjson.decode(body).raised)
      local _, ca = client:request("POST", "/call", cjson.encode({ opts = { ca_file = "/x" }, requests = {} }),
        TRUSTING)
      assert.matches("lua_ssl_trusted_certificate", cjson.decode(ca).raised)
    end)
  end)

  describe("keep-alive", function()
    local function conn_of(r) return r.body:match("^(%d+)") end

    it("reuses one pooled connection for consecutive requests", function()
      local rs = call({ { url = up("/conn") }, { url = up("/conn") }, { url = up("/conn") } })
      for _, r in ipairs(rs) do assert.is_true(r.ok, r.message) end
      assert.equal(conn_of(rs[1]), conn_of(rs[2]))
      assert.equal(conn_of(rs[2]), conn_of(rs[3]))
      assert.equal(rs[1].reused + 1, rs[2].reused)
      assert.equal(rs[2].reused + 1, rs[3].reused)
    end)

    it("opens a new connection after Connection: close and with keepalive = false", function()
      local rs = call({ { url = up("/close") }, { url = up("/conn") } })
      -- nginx adds its own "keep-alive" and keeps the connection open: only the
      -- transport's honouring of "close" makes the next request use a new one.
      assert.equal("keep-alive, close", rs[1].headers.connection)
      assert.are_not.equal(conn_of(rs[1]), conn_of(rs[2]))
      local off = call({ { url = up("/echo") }, { url = up("/conn") }, { url = up("/conn") } }, { keepalive = false })
      assert.equal("close", cjson.decode(off[1].body).headers.connection)
      assert.are_not.equal(conn_of(off[2]), conn_of(off[3]))
    end)

    it("retries once when the server closed a reused connection before answering", function()
      local rs = call({ { url = up("/stale", STALE) }, { url = up("/stale", STALE) } })
      assert.is_true(rs[1].ok, rs[1].message)
      assert.is_true(rs[2].ok, rs[2].message)
      assert.equal(0, rs[1].reused)
      assert.equal(0, rs[2].reused) -- answered on a fresh connection
      assert.are_not.equal(rs[1].body, rs[2].body)
      local _, hits = upstream:get("/hits?name=stale")
      assert.equal("3", hits) -- first request, the dropped reuse, the retry
    end)
  end)

  describe("TLS", function()
    it("verifies the certificate against lua_ssl_trusted_certificate, with SNI", function()
      local rs = call({ { url = ("https://localhost:%d/cl"):format(TLS) },
        { url = ("https://localhost:%d/conn"):format(TLS) } })
      assert.is_true(rs[1].ok, rs[1].message)
      assert.equal("hello", rs[1].body)
      assert.equal(rs[1].reused + 1, rs[2].reused)
    end)

    it("fails with kind tls when the certificate is not trusted", function()
      -- Own pool: the trusting server's verified connections live in this worker too.
      local r = one({ url = ("https://localhost:%d/cl"):format(TLS) }, { pool = "untrusting" }, UNTRUSTING)
      assert_error(r, "tls")
      assert.matches("self.signed", r.message)
    end)

    it("fails closed on an IP-literal URL (nginx checks DNS names only)", function()
      local r = one({ url = ("https://127.0.0.1:%d/cl"):format(TLS) })
      assert_error(r, "tls")
      assert.matches("host mismatch", r.message)
    end)

    it("skips verification only when ssl_verify = false is asked for", function()
      local r = one({ url = ("https://localhost:%d/cl"):format(TLS) }, { ssl_verify = false, pool = "untrusting" },
        UNTRUSTING)
      assert.is_true(r.ok, r.message)
      assert.equal(0, r.reused)
      assert.equal("hello", r.body)
    end)
  end)

  describe("transport.default()", function()
    it("gives the cosocket transport in content handlers and timers", function()
      local status, body = client:get("/default", TRUSTING)
      assert.equal(200, status)
      assert.equal("content skewguard.transport.ngx\n", body)
      local tstatus, tbody = client:get("/timer?url=" .. up("/cl"), TRUSTING)
      assert.equal(200, tstatus)
      assert.equal("timer skewguard.transport.ngx 200 hello\n", tbody)
    end)

    it("builds in init_worker; a request or sleep there raises, naming the phase", function()
      local status, body = client:get("/probe", TRUSTING)
      assert.equal(200, status)
      local built, request, sleep = body:match("^(.-)\n(.-)\n(.-)\n$")
      assert.equal("skewguard.transport.ngx", built)
      assert.matches('skewguard.transport.ngx: request: no cosockets in the nginx "init_worker" phase',
        request, 1, true)
      assert.matches("ngx.timer.at(0, ...)", request, 1, true)
      assert.matches('skewguard.transport.ngx: sleep: no cosockets in the nginx "init_worker" phase',
        sleep, 1, true)
    end)

    it("the transport built in init_worker works in a content handler", function()
      local status, body = client:get("/from_init?url=" .. up("/cl"), TRUSTING)
      assert.equal(200, status)
      assert.equal("200 hello\n", body)
    end)
  end)

  describe("no blocking", function()
    it("serves concurrent requests in one worker while each waits 0.5 s upstream", function()
      local n, delay = 20, 0.5
      local url = up("/slow?d=" .. delay)
      local results, elapsed = nginx.concurrent_get(TRUSTING, "/via_transport?url=" .. url, n)
      for i = 1, n do
        assert.is_table(results[i], "request " .. i .. " unanswered")
        assert.equal(200, results[i].status)
        assert.equal("200\n", results[i].body)
      end
      -- Serialised, this would take n * delay = 10 s.
      assert.is_true(elapsed >= delay, "elapsed " .. elapsed)
      assert.is_true(elapsed < delay * 3, ("%d requests took %.2f s"):format(n, elapsed))
    end)

    it("detects serialisation when a handler blocks in libcurl (control experiment)", function()
      local n, delay = 8, 0.2
      local url = up("/slow?d=" .. delay)
      local results, elapsed = nginx.concurrent_get(TRUSTING, "/via_blocking?url=" .. url, n)
      for i = 1, n do
        assert.is_table(results[i], "request " .. i .. " unanswered")
        assert.equal("200\n", results[i].body)
      end
      assert.is_true(elapsed >= n * delay * 0.8, ("%d blocking requests took only %.2f s"):format(n, elapsed))
    end)
  end)

  it("left no errors in the client nginx's log", function()
    assert.same({}, client:errors())
  end)
end)
