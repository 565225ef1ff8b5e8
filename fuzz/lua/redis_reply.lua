-- Driver for fuzz/redis_reply.c: bytes from a Redis server (or anything that
-- answers on its port) into core.redis_reader (redis.c over hiredis's parser),
-- fed whole and in pieces. Oracles: never raises; replies are the documented
-- Lua shapes; once the stream is broken every call says "protocol"; the pieces
-- give the same replies as the whole.
local core = require "skewguard.core"

local function shape_ok(v, depth)
  local t = type(v)
  if t == "string" or t == "boolean" or math.type(v) == "integer" then return true end
  if t ~= "table" or depth > 8 then return false end
  if v.ok ~= nil then return type(v.ok) == "string" and next(v, next(v)) == nil end
  if v.err ~= nil then return type(v.err) == "string" and next(v, next(v)) == nil end
  for i, x in pairs(v) do
    if math.type(i) ~= "integer" or not shape_ok(x, depth + 1) then return false end
  end
  return true
end

local function replies(chunks)
  local r = core.redis_reader()
  local out, broken = {}, false
  for _, chunk in ipairs(chunks) do
    local ok, msg, kind = r:feed(chunk)
    if not ok then
      if kind ~= "protocol" or type(msg) ~= "string" then error("feed failed without kind protocol") end
      broken = true
    end
    while not broken do
      local res = table.pack(r:reply())
      local v, m, k = res[1], res[2], res[3]
      if res.n == 0 then break end -- needs more bytes
      if v == nil and k == "protocol" then broken = true break end
      if v == nil then
        if k ~= "redis" or type(m) ~= "string" then error("reply failed with kind " .. tostring(k)) end
        out[#out + 1] = "error:" .. m
      else
        if not shape_ok(v, 0) then error("a reply of an undocumented shape") end
        out[#out + 1] = v
      end
    end
  end
  if broken then
    local v, m, k = r:reply()
    if v ~= nil or k ~= "protocol" or type(m) ~= "string" then error("a broken stream recovered") end
  end
  r:close()
  return out, broken
end

local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

return function(input)
  local whole, broken = replies({ input })
  local cut = (input:byte(1) or 0) % (#input + 1)
  local pieces, pbroken = replies({ input:sub(1, cut), input:sub(cut + 1) })
  if not broken and not pbroken and not same(whole, pieces) then
    error("feeding in two pieces gives other replies")
  end
end
