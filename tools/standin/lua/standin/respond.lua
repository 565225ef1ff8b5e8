-- Response helpers: Genesys-shaped JSON bodies and errors.
local cjson = require "cjson.safe"

local M = {}

-- Debian's lua-cjson has no empty_array: encode this marker and patch it to [].
M.EMPTY_ARRAY = "\1standin-empty-array\1"
local EMPTY_JSON = cjson.encode(M.EMPTY_ARRAY)

function M.encode(value)
  local body = cjson.encode(value)
  -- cjson escapes every "/"; unescaped paths read better and mean the same.
  return (body:gsub(EMPTY_JSON:gsub("%p", "%%%0"), "[]"):gsub("\\/", "/"))
end

function M.correlation_id()
  local ctx = ngx.ctx
  if not ctx.correlation_id then
    ctx.correlation_id = require("standin.crypto").uuid()
  end
  return ctx.correlation_id
end

function M.json(status, value, headers)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  if headers then
    for name, v in pairs(headers) do ngx.header[name] = v end
  end
  ngx.print(M.encode(value))
end

-- The API error shape: message, code, status, contextId, details, errors.
function M.api_error(status, code, message, headers, extra)
  local body = {
    message = message, code = code, status = status,
    contextId = M.correlation_id(), details = M.EMPTY_ARRAY, errors = M.EMPTY_ARRAY,
  }
  for k, v in pairs(extra or {}) do body[k] = v end
  M.json(status, body, headers)
end

-- The login host's error shape: error, description, error_description.
function M.oauth_error(status, err, description, headers)
  M.json(status, { error = err, description = description, error_description = description }, headers)
end

return M
