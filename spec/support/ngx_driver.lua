--- Client side of spec/30-ngx_transport_spec.lua, run inside nginx: performs
-- transport requests described by the test (JSON) and reports the results as JSON.
local cjson = require("cjson")
local core = require("skewguard.core")

local M = {}

local function result_of(res, err, t_before, t_after)
  local out = { t_before = t_before, t_after = t_after, elapsed = t_after - t_before }
  if res then
    out.ok = true
    for _, k in ipairs({ "status", "headers", "header_list", "reused", "t_send_mono", "t_send_wall",
                         "t_recv_mono", "t_recv_wall" }) do
      out[k] = res[k]
    end
    out.body = res.body
    out.body_length = #res.body
    if #res.body > 65536 then out.body = nil end
    local date = res.headers.date
    out.date = date and ngx.parse_http_time(date)
  else
    out.ok = false
    out.kind = err.kind
    out.message = err.message
    out.is_error = require("skewguard.errors").is(err)
  end
  return out
end

--- POST /call {opts = {...}, requests = {{method, url, headers, body, timeout}, ...}}
function M.call()
  ngx.req.read_body()
  local spec = cjson.decode(ngx.req.get_body_data())
  local ok, t = pcall(require("skewguard.transport.ngx").new, spec.opts or {})
  if not ok then
    ngx.say(cjson.encode({ raised = tostring(t) }))
    return
  end
  local results = {}
  for i, req in ipairs(spec.requests) do
    local t_before = core.monotonic()
    local pok, res, err = pcall(t.request, t, req)
    local t_after = core.monotonic()
    if not pok then
      results[i] = { raised = tostring(res) }
    else
      results[i] = result_of(res, err, t_before, t_after)
    end
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode({ results = results, transport = tostring(t) }))
end

--- GET /via_transport?url=...: one non-blocking request through the transport.
function M.via_transport()
  local t = require("skewguard.transport").default()
  local res, err = t:request({ url = ngx.var.arg_url, timeout = 10 })
  ngx.say(res and res.status or tostring(err))
end

--- GET /via_blocking?url=...: the same request through a blocking client
-- (LuaSocket), to show that the concurrency spec detects a blocked worker.
function M.via_blocking()
  local http = require("socket.http")
  local body, code = http.request(ngx.unescape_uri(ngx.var.arg_url))
  ngx.say(body and code or tostring(code))
end

--- GET /default: which transport skewguard.transport.default() picks here.
function M.default_here()
  local t = require("skewguard.transport").default()
  ngx.say(ngx.get_phase(), " ", getmetatable(t).__name)
end

--- GET /timer?url=...: default() and one request from an ngx.timer callback.
function M.in_timer()
  local url = ngx.var.arg_url
  local done = {}
  assert(ngx.timer.at(0, function(premature)
    if premature then return end
    local t = require("skewguard.transport").default()
    local res, err = t:request({ url = url })
    done.phase, done.name = ngx.get_phase(), getmetatable(t).__name
    done.result = res and (res.status .. " " .. res.body) or tostring(err)
  end))
  local deadline = core.monotonic() + 5
  while not done.result and core.monotonic() < deadline do ngx.sleep(0.01) end
  ngx.say(tostring(done.phase), " ", tostring(done.name), " ", tostring(done.result))
end

--- init_worker: default() must raise there; the message is kept for the spec.
function M.probe_init_worker()
  local ok, err = pcall(require("skewguard.transport").default)
  ngx.shared.probe:set("init_worker", (ok and "no error" or tostring(err)))
end

function M.probe()
  ngx.say(ngx.shared.probe:get("init_worker") or "missing")
end

return M
