--- Spec harness: a real nginx with the Lua module, started for one spec file.
--
--   local nginx = require("support.nginx")
--   local srv = nginx.start{
--     workers = 1,            -- worker_processes (default 1)
--     ports = 2,              -- how many free loopback ports to reserve (default 1)
--     http = function(ctx)    -- the body of http {}; ctx.port[i], ctx.prefix, ctx.repo
--       return ("server { listen 127.0.0.1:%d; location / { content_by_lua_block {...} } }")
--         :format(ctx.port[1])
--     end,
--     main = "...",           -- extra main-context directives (env, ...)
--     env = { NAME = "value" },  -- nginx's environment
--     conf = function(ctx) ... end, -- a whole nginx.conf instead of the generated one
--   }
--   srv:get("/path")          -- status, body, headers (LuaSocket, from the test process)
--   srv:errors()              -- [emerg]/[alert]/[crit]/[error] lines of the error log
--   srv:stop()                -- always kills it (call from finally/teardown)
--
-- Works under Lua 5.4 and LuaJIT; nginx itself always loads build/luajit (the Lua
-- module is LuaJIT), built on demand, and runs without LD_PRELOAD (make asan
-- preloads the sanitizer runtime into the test interpreter, not into nginx).
local socket = require("socket")

local M = {}

local MODULES = "/usr/lib/nginx/modules"

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.sh_quote = sh_quote

-- Every command runs without LD_PRELOAD: under make asan the sanitizer runtime is
-- preloaded into this interpreter, and tools such as pgrep hang with it.
local function clean(cmd)
  return "env -u LD_PRELOAD -u ASAN_OPTIONS -u LSAN_OPTIONS -u UBSAN_OPTIONS sh -c " .. sh_quote(cmd)
end

local function run(cmd)
  local ok, how, code = os.execute(clean(cmd))
  if type(ok) == "number" then return ok == 0, ok end -- Lua 5.1 returns the status only
  return ok == true, code, how
end
M.run = run

local function read_cmd(cmd)
  local p = assert(io.popen(clean(cmd), "r"))
  local out = p:read("*a")
  p:close()
  return out
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
M.read_file = read_file

local function write_file(path, content)
  local f = assert(io.open(path, "wb"))
  assert(f:write(content))
  f:close()
end
M.write_file = write_file

local function repo_root()
  local pwd = os.getenv("PWD")
  if not pwd or not io.open(pwd .. "/lua/skewguard/init.lua") then
    pwd = (read_cmd("pwd"):gsub("%s+$", ""))
  end
  return pwd
end
M.repo = repo_root()

--- A fresh private directory (mktemp -d); remove it with M.rmtree.
function M.tmpdir()
  local dir = (read_cmd("mktemp -d -t skewguard-XXXXXX"):gsub("%s+$", ""))
  assert(dir ~= "" and dir:match("^/"), "mktemp -d failed")
  return dir
end

function M.rmtree(dir)
  if type(dir) == "string" and dir:match("/skewguard%-[%w]+$") then
    run("rm -rf " .. sh_quote(dir))
  end
end

--- Reserves n distinct free loopback ports (bound together, then released).
function M.free_ports(n)
  local socks, ports = {}, {}
  for i = 1, n do
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    socks[i], ports[i] = s, tonumber(port)
  end
  for _, s in ipairs(socks) do s:close() end
  return ports
end

--- Makes sure the LuaJIT build of skewguard.core exists (make asan builds only
-- the sanitized Lua 5.4 one).
function M.ensure_luajit_build()
  local so = M.repo .. "/build/luajit/skewguard/core.so"
  if io.open(so) then return so end
  local ok = run("cd " .. sh_quote(M.repo) .. " && make -s all LUA=luajit >/dev/null")
  assert(ok and io.open(so), "could not build " .. so)
  return so
end

-- Running (a zombie counts as gone: where PID 1 does not reap, the exited
-- daemonised master stays a zombie and `kill -0` would still succeed).
local function alive(pid)
  local stat = pid and read_file("/proc/" .. pid .. "/stat")
  local state = stat and stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

local function children(pid)
  local out = read_cmd("pgrep -P " .. pid .. " 2>/dev/null")
  local pids = {}
  for p in out:gmatch("%d+") do pids[#pids + 1] = p end
  return pids
end

local function can_connect(port)
  local c = socket.tcp()
  c:settimeout(0.2)
  local ok = c:connect("127.0.0.1", port)
  c:close()
  return ok ~= nil
end

local Server = {}
Server.__index = Server

local function conf_text(opts, ctx)
  local http = opts.http
  if type(http) == "function" then http = http(ctx) end
  assert(type(http) == "string", "support.nginx: http must be a string or a function returning one")
  local p = ctx.prefix
  local user = read_cmd("id -u"):match("^0") and "user root root;\n" or ""
  return table.concat({
    "load_module " .. MODULES .. "/ndk_http_module.so;",
    "load_module " .. MODULES .. "/ngx_http_lua_module.so;",
    user .. "worker_processes " .. (opts.workers or 1) .. ";",
    "pid " .. p .. "/nginx.pid;",
    "error_log " .. p .. "/error.log " .. (opts.log_level or "info") .. ";",
    opts.main or "",
    "events { worker_connections 1024; }",
    "http {",
    "  access_log off;",
    "  client_body_temp_path " .. p .. "/tmp/body;",
    "  proxy_temp_path " .. p .. "/tmp/proxy;",
    "  fastcgi_temp_path " .. p .. "/tmp/fastcgi;",
    "  uwsgi_temp_path " .. p .. "/tmp/uwsgi;",
    "  scgi_temp_path " .. p .. "/tmp/scgi;",
    '  lua_package_path "' .. ctx.repo .. "/lua/?.lua;" .. ctx.repo .. "/lua/?/init.lua;" ..
      ctx.repo .. '/spec/?.lua;;";',
    '  lua_package_cpath "' .. ctx.repo .. '/build/luajit/?.so;;";',
    http,
    "}",
    "",
  }, "\n")
end

--- Starts nginx and waits until every reserved port accepts connections.
function M.start(opts)
  opts = opts or {}
  M.ensure_luajit_build()
  local prefix = M.tmpdir()
  run("mkdir -p " .. sh_quote(prefix .. "/tmp") .. " " .. sh_quote(prefix .. "/logs"))
  local ctx = { prefix = prefix, repo = M.repo, port = M.free_ports(opts.ports or 1) }
  local self = setmetatable({
    prefix = prefix, port = ctx.port[1], ports = ctx.port, conf = prefix .. "/nginx.conf",
  }, Server)
  -- opts.conf: a whole configuration (function(ctx) -> text) instead of the generated
  -- one; it must use ctx.prefix .. "/nginx.pid" and ctx.prefix .. "/error.log".
  write_file(self.conf, opts.conf and opts.conf(ctx) or conf_text(opts, ctx))
  -- opts.env: variables for nginx's environment (the config names them with `env`).
  local env = {}
  for name, value in pairs(opts.env or {}) do
    assert(name:match("^[%a_][%w_]*$"), "support.nginx: bad env name " .. tostring(name))
    env[#env + 1] = name .. "=" .. sh_quote(value) .. " "
  end
  table.sort(env)
  -- daemon on (the default): the command returns once the master runs, and a
  -- broken configuration fails here with nginx's message on stderr.
  local ok = run(table.concat(env) .. "nginx -p " .. sh_quote(prefix) .. " -c " .. sh_quote(self.conf) ..
    " >" .. sh_quote(prefix .. "/stderr.log") .. " 2>&1")
  if not ok then
    local why = (read_file(prefix .. "/stderr.log") or "") .. (read_file(prefix .. "/error.log") or "")
    M.rmtree(prefix)
    error("support.nginx: nginx failed to start:\n" .. why, 2)
  end
  local deadline = socket.gettime() + 10
  while socket.gettime() < deadline do
    local pid = read_file(prefix .. "/nginx.pid")
    self.pid = pid and pid:match("%d+")
    if self.pid then break end
    socket.sleep(0.02)
  end
  for _, port in ipairs(self.ports) do
    while not can_connect(port) and socket.gettime() < deadline do socket.sleep(0.02) end
  end
  if not self.pid or not can_connect(self.port) then
    local log = self:log()
    self:stop()
    error("support.nginx: nginx did not come up:\n" .. log, 2)
  end
  return self
end

function Server:url(path, i)
  return ("http://127.0.0.1:%d%s"):format(self.ports[i or 1], path or "/")
end

--- The whole error log so far (kept after stop()).
function Server:log()
  return self.saved_log or read_file(self.prefix .. "/error.log") or ""
end

--- Error log lines at level `error` or worse.
function Server:errors()
  local found = {}
  for line in self:log():gmatch("[^\n]+") do
    if line:match("%[error%]") or line:match("%[crit%]") or line:match("%[alert%]")
      or line:match("%[emerg%]") then
      found[#found + 1] = line
    end
  end
  return found
end

function Server:worker_pids()
  return self.pid and children(self.pid) or {}
end

--- Stops nginx: TERM, then KILL for the master and its workers if they linger.
-- Idempotent; removes the prefix directory but keeps the error log in memory.
function Server:stop()
  if self.stopped then return end
  self.stopped = true
  local pid = self.pid
  if pid then
    local workers = children(pid)
    run("kill -TERM " .. pid .. " 2>/dev/null")
    local deadline = socket.gettime() + 3
    while alive(pid) and socket.gettime() < deadline do socket.sleep(0.02) end
    for _, p in ipairs(workers) do
      if alive(p) then run("kill -KILL " .. p .. " 2>/dev/null") end
    end
    if alive(pid) then run("kill -KILL " .. pid .. " 2>/dev/null") end
  end
  self.saved_log = read_file(self.prefix .. "/error.log") or ""
  M.rmtree(self.prefix)
end

--- One HTTP/1.0 request from the test process; returns status, body, headers
-- (lower-case names) or nil, err.
function Server:request(method, path, body, port)
  local c = socket.tcp()
  c:settimeout(30)
  local ok, err = c:connect("127.0.0.1", port or self.port)
  if not ok then return nil, err end
  c:send(method .. " " .. path .. " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n" ..
    (body and ("Content-Length: " .. #body .. "\r\n\r\n" .. body) or "\r\n"))
  local data, rerr, partial = c:receive("*a")
  c:close()
  data = data or partial
  if not data or data == "" then return nil, rerr end
  local head, rest = data:match("^(.-)\r\n\r\n(.*)$")
  if not head then return nil, "malformed response" end
  local status = tonumber(head:match("^HTTP/%d%.%d (%d%d%d)"))
  local headers = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do headers[name:lower()] = value end
  return status, rest, headers
end

function Server:get(path, port)
  return self:request("GET", path, nil, port)
end

--- n GET requests sent at once over n connections, answered concurrently (LuaSocket,
-- non-blocking, select). Returns the list of {status, body} in request order and the
-- elapsed wall time from the first send to the last answer.
function M.concurrent_get(port, path, n, timeout)
  timeout = timeout or 30
  local conns, results, pending = {}, {}, {}
  for i = 1, n do
    local c = socket.tcp()
    c:settimeout(5)
    assert(c:connect("127.0.0.1", port))
    conns[i] = c
  end
  local t0 = socket.gettime()
  for i, c in ipairs(conns) do
    assert(c:send("GET " .. path .. " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"))
    c:settimeout(0)
    pending[c] = { index = i, chunks = {} }
  end
  local deadline = t0 + timeout
  while next(pending) and socket.gettime() < deadline do
    local list = {}
    for c in pairs(pending) do list[#list + 1] = c end
    local readable = socket.select(list, nil, deadline - socket.gettime())
    for _, c in ipairs(readable) do
      local st = pending[c]
      local data, err, partial = c:receive(65536)
      local got = data or partial
      if got and got ~= "" then st.chunks[#st.chunks + 1] = got end
      if err == "closed" then
        local raw = table.concat(st.chunks)
        results[st.index] = {
          status = tonumber(raw:match("^HTTP/%d%.%d (%d%d%d)")),
          body = raw:match("\r\n\r\n(.*)$"),
        }
        pending[c] = nil
        c:close()
      end
    end
  end
  local elapsed = socket.gettime() - t0
  for c in pairs(pending) do c:close() end
  return results, elapsed
end

return M
