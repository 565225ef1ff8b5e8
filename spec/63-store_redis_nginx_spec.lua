-- skewguard.store.redis inside nginx: the same store over cosockets (auto-detected in
-- the content phase), AUTH on new connections only, the keepalive pool, and TLS through
-- sslhandshake with lua_ssl_trusted_certificate. Real nginx, real redis-server.
local redis_server = require "support.redis_server"
local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"
local cjson = require "cjson"
local core = require "skewguard.core"

local PASSWORD = "nginx-redis-pw-5T"

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- The handler: runs every store method and reports what it saw (never the token).
local HANDLER = [[
local store_mod = require "skewguard.store.redis"
local cjson = require "cjson"
local args = ngx.req.get_uri_args()
STORES = STORES or {}
local name = (args.tls or "") .. ":" .. (args.password or "") .. ":" .. (args.server_name or "")
local store = STORES[name]
if not store then
  store = store_mod.new { port = tonumber(args.port), password = args.password, secret = "s3",
    tls = args.tls == "1", server_name = args.server_name, timeout = 1 }
  STORES[name] = store
end
local key = "skewguard:" .. args.key
local out = { socket = store:_use_ngx() and "ngx" or "luasocket" }
local rec = { id = args.key, access_token = "AT-in-nginx", expires_at = 1795737433.9, generation = 1 }
local ok, err = store:set(key, rec, 30)
out.set = ok or tostring(err)
local got = store:get(key)
out.same = type(got) == "table" and got.access_token == rec.access_token and got.id == rec.id
local owner = store:lock(key, 5)
out.locked = type(owner) == "string"
out.second_lock = store:lock(key, 5)
out.unlock = owner and store:unlock(key, owner)
out.delete_other = store:delete_if(key, "other")
out.delete = store:delete_if(key, rec.id)
out.after = store:get(key)
out.connects = store:stats().connects
out.pid = ngx.worker.pid()
ngx.say(cjson.encode(out))
]]

describe("redis store inside nginx (cosockets)", function()
  local rs, dir, port

  setup(function()
    rs = redis_server.start { password = PASSWORD, tls = true }
    local p = io.popen("mktemp -d /tmp/skewguard-ngxredis.XXXXXX")
    dir = p:read("*l")
    p:close()
    local cwd = io.popen("pwd"):read("*l")
    write(dir .. "/handler.lua", HANDLER)
    for _ = 1, 5 do
      port = free_port()
      write(dir .. "/nginx.conf", table.concat({
        "load_module /usr/lib/nginx/modules/ndk_http_module.so;",
        "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;",
        sh("[ $(id -u) -eq 0 ]") and "user root root;" or "",
        "worker_processes 1;", "daemon on;", "pid " .. dir .. "/nginx.pid;",
        "error_log " .. dir .. "/error.log warn;",
        "events { worker_connections 64; }",
        "http {", "access_log off;",
        "client_body_temp_path " .. dir .. "/body;", "proxy_temp_path " .. dir .. "/proxy;",
        "fastcgi_temp_path " .. dir .. "/fcgi;", "uwsgi_temp_path " .. dir .. "/uwsgi;",
        "scgi_temp_path " .. dir .. "/scgi;",
        "lua_package_path '" .. cwd .. "/lua/?.lua;" .. cwd .. "/lua/?/init.lua;;';",
        "lua_package_cpath '" .. cwd .. "/build/luajit/?.so;;';",
        "lua_ssl_trusted_certificate " .. rs.ca_file .. ";",
        "lua_ssl_verify_depth 2;",
        "server { listen 127.0.0.1:" .. port .. ";",
        "location /t { content_by_lua_file " .. dir .. "/handler.lua; }",
        "}", "}", "" }, "\n"))
      if sh("env -u LD_PRELOAD nginx -p " .. dir .. " -c " .. dir .. "/nginx.conf -e " .. dir
          .. "/error.log >/dev/null 2>&1") then
        break
      end
    end
    local deadline = core.monotonic() + 5
    while core.monotonic() < deadline do
      local c = socket.tcp()
      c:settimeout(0.05)
      local ok = c:connect("127.0.0.1", port)
      c:close()
      if ok then return end
      core.sleep(0.02)
    end
    error("nginx did not start")
  end)

  teardown(function()
    if dir then
      local f = io.open(dir .. "/nginx.pid")
      if f then
        local pid = f:read("*a"):match("%d+")
        f:close()
        sh("kill -TERM " .. pid)
        for _ = 1, 100 do
          if not io.open(dir .. "/nginx.pid") then break end
          core.sleep(0.02)
        end
      end
      sh("rm -rf " .. dir)
    end
    if rs then rs:destroy() end
  end)

  local function get(query)
    local chunks = {}
    local _, status = http.request { url = "http://127.0.0.1:" .. port .. "/t?" .. query,
      sink = ltn12.sink.table(chunks) }
    local body = table.concat(chunks)
    assert.equal(200, status, body)
    return cjson.decode(body)
  end

  local function total_connections()
    local info = rs:cli("INFO", "stats")
    return tonumber(info:match("total_connections_received:(%d+)"))
  end

  it("runs every method over a cosocket, with AUTH once per pooled connection", function()
    local before = total_connections()
    local out
    for i = 1, 5 do
      out = get("port=" .. rs.port .. "&password=" .. PASSWORD .. "&key=k" .. i)
      assert.equal("ngx", out.socket)
      assert.is_true(out.set)
      assert.is_true(out.same)
      assert.is_true(out.locked)
      assert.is_false(out.second_lock)
      assert.is_true(out.unlock)
      assert.is_false(out.delete_other)
      assert.is_true(out.delete)
      assert.is_false(out.after)
    end
    -- one connection (and one AUTH) served all five requests through the keepalive pool;
    -- +1 for the INFO connection of total_connections itself
    assert.equal(1, out.connects)
    assert.equal(before + 2, total_connections())
  end)

  it("a wrong password is a typed error in nginx too", function()
    local out = get("port=" .. rs.port .. "&password=wrong-pw&key=w1")
    assert.equal("ngx", out.socket)
    assert.truthy(tostring(out.set):find("unauthorized: redis 127.0.0.1:%d+ refused AUTH %(WRONGPASS%)"), out.set)
    assert.is_nil(tostring(out.set):find("wrong-pw", 1, true))
  end)

  it("speaks TLS through sslhandshake, verifying against lua_ssl_trusted_certificate", function()
    local out = get("tls=1&port=" .. rs.tls_port .. "&password=" .. PASSWORD .. "&server_name=localhost&key=t1")
    assert.is_true(out.set)
    assert.is_true(out.same)
    assert.is_true(out.delete)
  end)

  it("refuses a TLS certificate for another name", function()
    local out = get("tls=1&port=" .. rs.tls_port .. "&password=" .. PASSWORD .. "&server_name=redis.example&key=t2")
    assert.truthy(tostring(out.set):find("^skewguard: tls: redis 127.0.0.1:%d+: TLS handshake failed"), out.set)
  end)
end)
