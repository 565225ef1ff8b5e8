--- Upstream test server for spec/30-ngx_transport_spec.lua, run inside nginx:
-- one handler per path, each producing a response shape the transport must
-- handle (or reject). Raw responses go through ngx.req.socket(true) so framing
-- errors can be produced on purpose.
local cjson = require("cjson")

local M = {}

local function arg(name, default)
  return tonumber(ngx.var["arg_" .. name]) or default
end

local function fixed(body, status)
  ngx.status = status or 200
  ngx.header["Content-Length"] = #body
  ngx.header["Content-Type"] = "text/plain"
  ngx.print(body)
end

local function raw(bytes)
  local sock = assert(ngx.req.socket(true))
  sock:send(bytes)
end

local function count(name)
  return ngx.shared.hits:incr(name, 1, 0)
end

local handlers = {}

handlers["/cl"] = function() fixed("hello") end

handlers["/chunked"] = function()
  local n = arg("n", 3000)
  ngx.header["Content-Type"] = "text/plain"
  local sent, piece = 0, 1000
  while sent < n do
    local k = math.min(piece, n - sent)
    ngx.print(string.rep(string.char(97 + (sent / piece) % 26), k))
    ngx.flush(true)
    sent = sent + k
  end
end

handlers["/eof"] = function()
  raw("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" .. string.rep("e", arg("n", 5000)))
end

handlers["/badchunk"] = function()
  raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n")
end

handlers["/badchunk_crlf"] = function()
  raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n")
end

handlers["/truncated"] = function()
  raw("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
end

handlers["/truncated_chunked"] = function()
  raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly-")
end

handlers["/garbage"] = function()
  raw("HELLO there\r\n\r\n")
end

handlers["/huge"] = function()
  -- Just above the default max_body of 8 MiB, announced by Content-Length.
  fixed(string.rep("h", 8 * 1024 * 1024 + 1))
end

handlers["/slow"] = function()
  ngx.sleep(arg("d", 0.5))
  fixed("slow")
end

handlers["/slowbody"] = function()
  -- Status line and headers now, the body later: t_recv must not wait for it.
  ngx.header["Content-Type"] = "text/plain"
  ngx.send_headers()
  ngx.flush(true)
  ngx.sleep(arg("d", 0.3))
  ngx.print("late")
end

handlers["/conn"] = function()
  fixed(ngx.var.connection .. " " .. ngx.var.connection_requests)
end

handlers["/close"] = function()
  ngx.header["Connection"] = "close"
  fixed(ngx.var.connection)
end

handlers["/nocontent"] = function()
  ngx.status = 204
  ngx.send_headers()
end

handlers["/notmodified"] = function()
  ngx.status = 304
  ngx.send_headers()
end

handlers["/repeated"] = function()
  ngx.header["X-Multi"] = { "one", "two", "three" }
  fixed("r")
end

handlers["/echo"] = function()
  ngx.req.read_body()
  fixed(cjson.encode({
    method = ngx.req.get_method(),
    headers = ngx.req.get_headers(),
    body = ngx.req.get_body_data() or "",
    uri = ngx.var.request_uri,
  }))
end

-- A keep-alive connection that the server drops when the client reuses it,
-- before answering: the stale-pooled-connection race, made deterministic.
handlers["/stale"] = function()
  count("stale")
  if tonumber(ngx.var.connection_requests) > 1 then return ngx.exit(444) end
  fixed(ngx.var.connection)
end

-- Closes every connection without a byte of response.
handlers["/drop"] = function()
  count("drop")
  return ngx.exit(444)
end

handlers["/hits"] = function()
  fixed(tostring(ngx.shared.hits:get(ngx.var.arg_name) or 0))
end

function M.handle()
  local h = handlers[ngx.var.uri]
  if not h then return ngx.exit(404) end
  return h()
end

return M
