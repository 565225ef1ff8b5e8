-- Driver for fuzz/http_headers.c: `push_headers` is sg_push_headers, registered by
-- the C target. Oracles: every field line of the block is listed once, in order,
-- with a lower-case name and a trimmed value without line breaks; headers[name]
-- is the list's values for that name joined with ", ".
return function(block)
  local headers, list = push_headers(block) -- luacheck: globals push_headers
  local joined, expected = {}, 0
  for line in (block .. "\n"):gmatch("([^\n]*)\n") do
    local name = line:match("^([^:]+):")
    if name and #name < 128 and line:sub(1, 5) ~= "HTTP/" then expected = expected + 1 end
  end
  if #list ~= expected then error(("listed %d field lines, expected %d"):format(#list, expected)) end
  for _, pair in ipairs(list) do
    local name, value = pair[1], pair[2]
    if name == "" or name:find("[:A-Z\n]") then error("bad name " .. ("%q"):format(name)) end
    if value:find("\n", 1, true) or value:find("^[ \t]") or value:find("[ \t\r]$") then
      error("value not trimmed " .. ("%q"):format(value))
    end
    joined[name] = joined[name] and (joined[name] .. ", " .. value) or value
  end
  for name, value in pairs(joined) do
    if headers[name] ~= value then error("headers[" .. name .. "] is not the joined list") end
  end
  for name in pairs(headers) do
    if joined[name] == nil then error("headers has a name the list does not") end
  end
end
