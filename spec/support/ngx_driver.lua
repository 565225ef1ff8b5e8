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
                         "t_recv_mono", "t_recv_wall", "t_start_mono", "t_start_wall", "new_connections",
                         "http_version" }) do
      out[k] = res[k]
    end
    -- cjson keeps 14 significant digits: 0.1 ms of a Unix time. Exact copies:
    out.t_send_wall_us = string.format("%.6f", res.t_send_wall)
    out.t_recv_wall_us = string.format("%.6f", res.t_recv_wall)
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

--- GET /via_blocking?url=...: the same request through the blocking libcurl
-- transport (what must never run here), to show that the concurrency spec
-- detects a blocked worker.
function M.via_blocking()
  local t = require("skewguard.transport.curl").new({ timeout = 30 })
  local res, err = t:request({ url = ngx.var.arg_url })
  t:close()
  ngx.say(res and res.status or tostring(err))
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

--- init_worker: default() builds the cosocket transport there (no cosocket is
-- needed to build it), and a request from that phase raises; both outcomes are
-- kept for the spec. The transport is kept too: /from_init uses it later.
local init_transport
function M.probe_init_worker()
  local ok, t = pcall(require("skewguard.transport").default)
  local built = ok and getmetatable(t).__name or ("raised: " .. tostring(t))
  local rok, rerr = false, "not tried"
  if ok then
    init_transport = t
    rok, rerr = pcall(t.request, t, { url = "http://127.0.0.1:9/" })
  end
  local sok, serr = false, "not tried"
  if ok then sok, serr = pcall(t.sleep, t, 0.001) end
  ngx.shared.probe:set("init_worker", built .. "\n" .. (rok and "request returned" or tostring(rerr)) ..
    "\n" .. (sok and "sleep returned" or tostring(serr)))
end

--- GET /from_init?url=...: the transport built in init_worker, used in a request.
function M.from_init()
  local res, err = init_transport:request({ url = ngx.var.arg_url })
  ngx.say(res and (res.status .. " " .. res.body) or tostring(err))
end

function M.probe()
  ngx.say(ngx.shared.probe:get("init_worker") or "missing")
end

return M
