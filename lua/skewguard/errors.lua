--- The error object (DESIGN.md §5): runtime failures return nil, err where err
-- has a stable `kind`, a `message` and, where known, `status`, `code`,
-- `correlation_id`, `retry_after`, `skew`. tostring(err) is one line and never
-- contains a secret: messages are built from our own words and the server's
-- error codes, never from request material.
local M = {}

local Error = {}
Error.__index = Error
Error.__name = "skewguard.error"

local KINDS = {
  clock_skew = true, unauthorized = true, forbidden = true, rate_limited = true,
  timeout = true, network = true, tls = true, http = true, protocol = true,
  kiss_of_death = true, bogus = true, unsynchronised = true, config = true,
  token = true, too_large = true, not_found = true, unavailable = true,
}
M.kinds = KINDS

function Error.__tostring(e)
  local parts = { "skewguard: ", e.kind, ": ", e.message or "" }
  if e.status then parts[#parts + 1] = " (HTTP " .. tostring(e.status) .. ")" end
  if e.code then parts[#parts + 1] = " [" .. tostring(e.code) .. "]" end
  if e.correlation_id then parts[#parts + 1] = " correlation-id=" .. tostring(e.correlation_id) end
  if e.retry_after then parts[#parts + 1] = string.format(" retry-after=%gs", e.retry_after) end
  local s = table.concat(parts)
  return (s:gsub("[\r\n]+", " "))
end

--- Make an error. `kind` must be one of M.kinds (a programming error otherwise).
function M.new(kind, message, fields)
  if not KINDS[kind] then error("skewguard.errors: unknown error kind " .. tostring(kind), 2) end
  local e = { kind = kind, message = message }
  if fields then for k, v in pairs(fields) do e[k] = v end end
  return setmetatable(e, Error)
end

--- Wrap the `nil, message, kind` convention of skewguard.core.
function M.from_core(message, kind, fields)
  return M.new(KINDS[kind] and kind or "protocol", message, fields)
end

function M.is(v, kind)
  return getmetatable(v) == Error and (kind == nil or v.kind == kind)
end

return M
