--- The skew estimator (DESIGN.md §2, docs/primitives.md): skew = local - server
-- as an interval. `skew.new(opts)` returns a `skewguard.skew` userdata from
-- skewguard.core; its methods are documented in docs/primitives.md.
local core = require "skewguard.core"

local M = {}

-- stamp_lag: a server may cut its Date from a clock cached per event-loop turn;
-- a millisecond covers that at the cost of a millisecond of interval width.
local DEFAULTS = { drift_ppm = 50, max_samples = 128, max_rtt = 5, stamp_lag = 0.001 }
local TYPES = { drift_ppm = "number", max_samples = "number", max_rtt = "number", wall = "function",
  stamp_lag = "number" }

--- opts: drift_ppm (50), max_samples (128, at most 256), max_rtt (5 s: Date
-- samples with a longer round trip are dropped), stamp_lag (0.001 s: how stale
-- a server's Date may be), wall (a function returning
-- the local wall time in seconds; default the system clock. Tests and hosts
-- with an injected clock offset pass their own).
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("skewguard.skew.new: opts must be a table", 2) end
  for k, v in pairs(opts) do
    if not TYPES[k] then error("skewguard.skew.new: unknown option " .. tostring(k), 2) end
    if type(v) ~= TYPES[k] then
      error("skewguard.skew.new: option " .. k .. " must be a " .. TYPES[k], 2)
    end
  end
  local max_samples = opts.max_samples or DEFAULTS.max_samples
  if max_samples ~= math.floor(max_samples) then
    error("skewguard.skew.new: max_samples must be an integer", 2)
  end
  return core.skew_new(opts.drift_ppm or DEFAULTS.drift_ppm, max_samples,
    opts.max_rtt or DEFAULTS.max_rtt, opts.wall, opts.stamp_lag or DEFAULTS.stamp_lag)
end

M.defaults = DEFAULTS

--- True when v is an estimator.
function M.is(v)
  local mt = getmetatable(v)
  return type(v) == "userdata" and type(mt) == "table" and mt.__name == "skewguard.skew"
end

return M
