-- Starts and drives the Genesys stand-in (tools/standin) from specs, under Lua 5.4 and
-- LuaJIT alike. One server per spec file: start it in setup(), stop it in teardown().
--
--   local standin = require "support.standin"
--   local s = standin.start { offset = 7.3, lifetime = 5, tls = false, workers = 1, jwt = false }
--   s.url, s.port, s.control_url, s.ca_file (TLS), s.prefix
--   s:control { api = { kind = "rate_limit", count = 2, retry_after = 1 } }
--   s:counters(), s:counter("api_429"), s:state(), s:reset(), s:stop()
--   s:issued() -> { access_tokens = {...}, refresh_tokens = {...}, codes = {...} }
--   s:request { method = "GET", path = "/api/v2/tokens/me", headers = {...}, body = "..." }
--   s:token() -> a fresh client-credentials access token
local http = require "socket.http"
local ltn12 = require "ltn12"
local cjson = require "cjson"

local M = {}
local Standin = {}
Standin.__index = Standin

local RUN = "tools/standin/run"

local shell_quote = require("support.sys").quote

-- The interpreter's own pid: the shell popen starts is its child.
local function own_pid()
  local f = assert(io.popen("echo $PPID"))
  local pid = f:read("*l")
  f:close()
  return pid
end

function M.start(opts)
  opts = opts or {}
  local args = { "env -u LD_PRELOAD sh", RUN, "start", "--owner-pid", own_pid() }
  local function add(flag, value) args[#args + 1] = flag; args[#args + 1] = shell_quote(value) end
  if opts.offset then add("--offset", string.format("%.6f", opts.offset)) end
  if opts.lifetime then add("--lifetime", opts.lifetime) end
  if opts.workers then add("--workers", opts.workers) end
  if opts.client_id then add("--client-id", opts.client_id) end
  if opts.client_secret then add("--client-secret", opts.client_secret) end
  if opts.tls then args[#args + 1] = "--tls" end
  if opts.jwt then args[#args + 1] = "--jwt" end
  local f = assert(io.popen(table.concat(args, " ") .. " 2>&1"))
  local out = f:read("*a")
  f:close()
  local s = setmetatable({
    url = out:match("standin: (%S+)"),
    control_url = out:match("control: (%S+)"),
    prefix = out:match("prefix: (%S+)"),
    pid = tonumber(out:match("pid: (%d+)")),
    ca_file = out:match("ca: (%S+)"),
  }, Standin)
  if not (s.url and s.control_url and s.prefix) then
    error("stand-in did not start:\n" .. out, 2)
  end
  s.port = tonumber(s.url:match(":(%d+)$"))
  s.client_id = opts.client_id or "test-client"
  s.client_secret = opts.client_secret or "test-secret"
  return s
end

-- Plain HTTP to the stand-in (its control port when it speaks TLS). Returns status,
-- headers (lower-case names), body.
function Standin:request(req)
  local chunks = {}
  local headers = req.headers or {}
  if req.body then headers["Content-Length"] = tostring(#req.body) end
  local _, status, response_headers = http.request {
    url = (req.base or self.control_url) .. req.path,
    method = req.method or "GET",
    headers = headers,
    source = req.body and ltn12.source.string(req.body) or nil,
    sink = ltn12.sink.table(chunks),
    redirect = false,
  }
  if type(status) ~= "number" then error("request to stand-in failed: " .. tostring(status), 2) end
  return status, response_headers, table.concat(chunks)
end

local function json_call(self, method, path, value)
  local body = value and cjson.encode(value) or nil
  local status, _, raw = self:request {
    method = method, path = path, body = body,
    headers = body and { ["Content-Type"] = "application/json" } or nil,
  }
  local decoded = cjson.decode(raw)
  if status ~= 200 then error("stand-in control " .. path .. ": " .. tostring(decoded.error), 3) end
  return decoded
end

function Standin:control(changes) return json_call(self, "POST", "/__standin/control", changes) end
function Standin:state() return json_call(self, "GET", "/__standin/state") end
function Standin:counters() return json_call(self, "GET", "/__standin/counters") end
function Standin:counter(name) return self:counters()[name] or 0 end
function Standin:reset() return json_call(self, "POST", "/__standin/reset") end
-- Every access token, refresh token and code issued since the last reset.
function Standin:issued() return json_call(self, "GET", "/__standin/issued") end

-- LuaSocket's mime.b64 (standard alphabet, padded).
local function b64(s)
  return (require("mime").b64(s))
end
M.base64 = b64

function Standin:basic_auth(id, secret)
  return "Basic " .. b64((id or self.client_id) .. ":" .. (secret or self.client_secret))
end

-- A fresh client-credentials token (counts as a token request).
function Standin:token()
  local status, _, body = self:request {
    method = "POST", path = "/oauth/token", body = "grant_type=client_credentials",
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded",
                Authorization = self:basic_auth() },
  }
  if status ~= 200 then error("stand-in token request failed: " .. status .. " " .. body, 2) end
  return cjson.decode(body).access_token
end

function Standin:stop()
  if self.stopped then return end
  self.stopped = true
  os.execute("env -u LD_PRELOAD sh " .. RUN .. " stop " .. shell_quote(self.prefix) .. " >/dev/null 2>&1")
end

return M
