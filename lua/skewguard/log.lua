--- Logging with levels and fields. A logger is function(level, message, fields).
-- The default is quiet unless SKEWGUARD_LOG names a level, except inside nginx,
-- where it writes through ngx.log at the matching level and the error_log level
-- decides what is kept; elsewhere it writes to stderr.
-- Callers never pass secrets: tokens are logged by fingerprint only.
local M = {}

local LEVELS = { debug = 1, info = 2, warn = 3, error = 4 }
M.levels = LEVELS

local function format_fields(fields)
  if not fields then return "" end
  local keys = {}
  for k in pairs(fields) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    local v = fields[k]
    if type(v) == "number" and v ~= math.floor(v) then v = string.format("%.6g", v) end
    out[#out + 1] = k .. "=" .. tostring(v)
  end
  return " " .. table.concat(out, " ")
end
M.format_fields = format_fields

local function default_sink()
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.log and ngx.config and ngx.config.subsystem then
    local map = { debug = ngx.DEBUG, info = ngx.INFO, warn = ngx.WARN, error = ngx.ERR }
    return function(level, message, fields)
      ngx.log(map[level] or ngx.NOTICE, "skewguard: ", message, format_fields(fields))
    end
  end
  return function(level, message, fields)
    io.stderr:write("skewguard ", level, " ", message, format_fields(fields), "\n")
  end
end

--- Inside nginx: our level name for the error_log level of this nginx (so lines
-- nginx would drop are not even formatted); nil outside nginx.
function M.nginx_threshold()
  local ngx = rawget(_G, "ngx")
  if not (ngx and ngx.log and ngx.config and ngx.config.subsystem) then return nil end
  local ok, errlog = pcall(require, "ngx.errlog")
  local level = ok and errlog.get_sys_filter_level and errlog.get_sys_filter_level()
  if type(level) ~= "number" then return "debug" end
  if level >= ngx.DEBUG then return "debug" end
  if level >= ngx.INFO then return "info" end
  if level >= ngx.WARN then return "warn" end
  return "error"
end

--- Returns a logger object with :debug/:info/:warn/:error(message, fields).
-- `sink` is the user's function(level, message, fields) or nil; `threshold` a level name.
function M.new(sink, threshold)
  threshold = threshold or os.getenv("SKEWGUARD_LOG")
  if sink == nil and (threshold == nil or threshold == "") then
    -- inside nginx the error_log level decides; elsewhere quiet by default
    threshold = M.nginx_threshold() or "off"
  end
  local min = LEVELS[threshold] or (threshold == "off" and math.huge) or LEVELS.debug
  sink = sink or default_sink()
  local log = {}
  for name, rank in pairs(LEVELS) do
    if rank >= min then
      log[name] = function(_, message, fields) sink(name, message, fields) end
    else
      log[name] = function() end
    end
  end
  log.enabled = function(_, level) return LEVELS[level] >= min end
  return log
end

return M
