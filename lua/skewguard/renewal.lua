--- Proactive token renewal from an nginx timer, so requests never wait for a
-- token: `client:start_renewal_timer{ interval = 1 }` (or
-- `require("skewguard.renewal").start(token_manager, opts, log)`), once per
-- worker, typically from init_worker_by_lua*.
--
-- Each tick looks at the token's state; unless it is fresh it calls get(), which
-- renews (single flight in the worker, and across workers through the store) or
-- adopts another worker's token. The next tick is due when the advisory window
-- opens, but never more than `interval` (default 1 s) nor less than
-- `min_interval` (default 0.05 s) away. The timer stops when nginx exits or
-- reloads (premature timers) or after handle:stop().
local M = {}

local OPTIONS = { interval = "number", min_interval = "number" }

function M.start(tokens, opts, log)
  opts = opts or {}
  if type(opts) ~= "table" then error("skewguard.renewal: options table expected", 2) end
  for k, v in pairs(opts) do
    if not OPTIONS[k] then error("skewguard.renewal: unknown option " .. tostring(k), 2) end
    if type(v) ~= "number" or v ~= v or v <= 0 or v == math.huge then
      error("skewguard.renewal: " .. k .. " must be a positive number of seconds", 2)
    end
  end
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.timer) ~= "table" then
    error("skewguard.renewal: needs nginx (ngx.timer); outside nginx, tokens renew on use", 2)
  end
  log = log or tokens.log
  local interval, min_interval = opts.interval or 1, opts.min_interval or 0.05
  local handle = { ticks = 0, failures = 0, running = true }
  function handle.stop() handle.stopped = true end

  local tick
  local function schedule(delay)
    local ok, err = ngx.timer.at(delay, tick)
    if not ok then
      handle.running = false
      log:error("token renewal timer could not be scheduled; tokens now renew on use", { error = err })
    end
  end

  tick = function(premature)
    if premature or handle.stopped then
      handle.running = false
      return
    end
    handle.ticks = handle.ticks + 1
    local ok, perr = pcall(function()
      if tokens:state() ~= "fresh" then
        local access, err = tokens:get()
        if not access then
          handle.failures = handle.failures + 1
          log:warn("proactive token renewal failed; requests will retry", { kind = err.kind, error = err.message })
        end
      end
    end)
    if not ok then log:error("token renewal timer tick raised", { error = tostring(perr) }) end
    local delay = interval
    local info = tokens:info()
    if info.seconds_left and info.advisory then
      local until_advisory = info.seconds_left - info.advisory
      if until_advisory < delay then delay = until_advisory end
    end
    if delay < min_interval then delay = min_interval end
    schedule(delay)
  end

  schedule(0)
  return handle
end

return M
