-- Driver for fuzz/httpdate.c: format/parse round trip and Retry-After.
local core = require "skewguard.core"

return function(input)
  local t, msg, kind = core.parse_http_date(input)
  if t then
    local again = core.parse_http_date(core.format_http_date(t))
    if again ~= t then error(("round trip: %s -> %s"):format(tostring(t), tostring(again))) end
  elseif type(msg) ~= "string" or kind ~= "protocol" then
    error("parse_http_date failed without a message and kind protocol")
  end
  local n, form, k = core.parse_retry_after(input)
  if n then
    if form == "delta" then
      if not (n >= 0 and n <= 2147483648) then error("delta out of range: " .. tostring(n)) end
    elseif form == "date" then
      if n ~= t then error("Retry-After date disagrees with parse_http_date") end
    else
      error("unknown Retry-After form " .. tostring(form))
    end
  elseif type(form) ~= "string" or k ~= "protocol" then
    error("parse_retry_after failed without a message and kind protocol")
  end
end
