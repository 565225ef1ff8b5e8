-- Standard base64 decoding written independently of the core, so specs can check
-- what the core encoded without trusting the core.
local M = {}

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local index = {}
for i = 1, #alphabet do index[alphabet:sub(i, i)] = i - 1 end

function M.decode(s)
  s = s:gsub("=+$", "")
  local out, bits, nbits = {}, 0, 0
  for c in s:gmatch(".") do
    local v = index[c]
    if v == nil then return nil end
    bits = bits * 64 + v
    nbits = nbits + 6
    if nbits >= 8 then
      nbits = nbits - 8
      local p = 2 ^ nbits
      local byte = math.floor(bits / p)
      out[#out + 1] = string.char(byte)
      bits = bits - byte * p
    end
  end
  return table.concat(out)
end

-- Decodes application/x-www-form-urlencoded: '+' is a space, %XX a byte.
function M.form_decode(s)
  return (s:gsub("%+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- name=value pairs of a form body or query string, decoded.
function M.parse_form(s)
  local t = {}
  for pair in s:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=(.*)$")
    t[M.form_decode(k)] = M.form_decode(v)
  end
  return t
end

return M
