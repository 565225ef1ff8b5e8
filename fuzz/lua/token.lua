-- Driver for fuzz/token.c: token answers from a hostile token endpoint.
-- First byte even: the rest is the body of the token endpoint's answer (the
-- status picked by the second byte), run through the real token manager
-- (skewguard.token: JSON decode, error mapping, JWT claims, the iat sample,
-- token.c's accept) over a transport that plays the server. First byte odd: a
-- structured answer table (numbers, strings of any bytes, wrong types) straight
-- into token.c's accept with server times and skew bounds.
-- Oracles: nothing raises; a stored token is the one answered, header-safe and
-- not expired; no access token, refresh token or the client secret appears in
-- an error, a log line or tostring.
local core = require "skewguard.core"
local cjson = require "cjson.safe"
local token = require "skewguard.token"
local skew = require "skewguard.skew"

local SECRET = "s3cr:et+%&\195\169-fuzz"
local STATUS = { 200, 200, 200, 400, 401, 403, 429, 500, 503 }

-- Every message accept() and the manager can give for a 200 answer, numbers
-- replaced by '#': a message outside this set could carry server material.
local MESSAGES = {}
for _, m in ipairs({
  "token answer has no access_token", "token answer has an empty access_token",
  "access_token longer than # MiB", "access_token contains spaces or control characters",
  "token answer has no expires_in", "expires_in is not a number", "expires_in # is not a usable lifetime",
  "token_type is not a string", "unsupported token_type (not bearer)", "refresh_token is not a string",
  "refresh_token is empty, too long or has control characters", "token answer is already expired (# s ago)",
  "token answer is never valid (not-before is after expiry)",
  "token answer is not a JSON object (malformed or truncated)",
}) do MESSAGES[m] = true end

local function template(msg)
  return (tostring(msg):gsub("%-?nan", "#"):gsub("%-?inf", "#"):gsub("[-+]?%d[%d.eE+-]*", "#"))
end

-- A secret leaks when it is in `text` (8 bytes or more: shorter ones are found
-- in any text by chance), unless the server's own body holds it (an error
-- description may quote anything; the fuzzer learns strings we search for).
local function leaks(text, secrets, body)
  text = tostring(text)
  for _, sec in ipairs(secrets) do
    if #sec >= 8 and text:find(sec, 1, true) and not (body and body:find(sec, 1, true)) then return sec end
  end
end

-- What the manager logs for one renewal: fixed messages, fixed or numeric field
-- values; error texts are checked against MESSAGES instead.
local LOG_MESSAGES = { ["token request"] = true, ["token request failed"] = true,
  ["token endpoint refused"] = true, ["token answer rejected"] = true, ["token stored"] = true }
local OWN_VALUES = { client_credentials = true, ["http://127.0.0.1:9/oauth/token"] = true, fuzz = true }

local function check_log(entry, status, secrets, body)
  local msg, fields = entry[2], entry[3] or {}
  if not LOG_MESSAGES[msg] then error("unexpected log message " .. tostring(msg)) end
  for k, v in pairs(fields) do
    if type(v) == "string" and not OWN_VALUES[v] then
      if k == "fingerprint" then
        if not v:find("^%x%x%x%x%x%x%x%x$") then error("fingerprint is not 8 hex digits") end
      elseif k == "error" and status == 200 then
        if not MESSAGES[template(v)] then error("unexpected error text in a log line: " .. v) end
      elseif leaks(v, secrets, status ~= 200 and body or nil) then
        error("a secret appears in log field " .. tostring(k))
      end
    end
  end
end

-- tostring of the objects: exact shapes with no room for token material.
local TOKEN_SHAPES = { "^skewguard%.token{%a+}$", "^skewguard%.token{closed}$",
  "^skewguard%.token{Bearer, [%a_]+, fp=%x%x%x%x%x%x%x%x, %-?[%d.]+s left, gen=%d+}$" }
local function check_token_string(text)
  for _, shape in ipairs(TOKEN_SHAPES) do if text:find(shape) then return end end
  error("unexpected tostring of the token: " .. text)
end

local function header_safe(s) return #s > 0 and not s:find("[%z\1-\32\127]") end

local function via_manager(status, body, date)
  local logs = {}
  local est = skew.new()
  local transport = {
    now = function() return core.monotonic() end,
    wall = function() return core.wall() end,
    sleep = function() end,
    request = function()
      local m, w = core.now()
      return { status = status, body = body,
        headers = { date = date, ["inin-correlation-id"] = "fuzz", ["retry-after"] = "1" },
        t_send_mono = m - 0.01, t_send_wall = w - 0.01, t_recv_mono = m, t_recv_wall = w }
    end,
  }
  local tm = token.new({ client_id = "fuzz-client", client_secret = SECRET,
    token_url = "http://127.0.0.1:9/oauth/token", transport = transport, estimator = est,
    logger = function(level, msg, fields) logs[#logs + 1] = { level, msg, fields } end,
    log_level = "debug" })
  local gen, err = tm:refresh()
  local answer = cjson.decode(body)
  local secrets = { SECRET }
  -- only a 200 answer issues tokens; an error answer's text is the server's own
  if status == 200 and type(answer) == "table" then
    for _, k in ipairs({ "access_token", "refresh_token" }) do
      if type(answer[k]) == "string" then secrets[#secrets + 1] = answer[k] end
    end
  end
  if gen then
    if status ~= 200 then error("stored a token from an HTTP " .. status .. " answer") end
    local access, state = tm.tok:access_token()
    if access ~= answer.access_token then error("stored token is not the answered one") end
    if not header_safe(access) then error("stored a token that is not header-safe") end
    if state == "expired" or state == "empty" then error("stored an expired token") end
    local info = tm:info()
    if info.fingerprint ~= core.fingerprint(access) then error("fingerprint mismatch") end
  else
    if type(err) ~= "table" or type(err.kind) ~= "string" then error("failure without an error object") end
    if status == 200 and not MESSAGES[template(err.message)] then
      error("unexpected message for a 200 answer: " .. tostring(err.message))
    end
    if status == 200 then
      -- our words only: the message (checked above) and the status
      local expected = "skewguard: " .. err.kind .. ": " .. err.message
        .. (err.status and (" (HTTP " .. err.status .. ")") or "")
      if tostring(err) ~= expected then error("unexpected tostring of the error: " .. tostring(err)) end
    elseif leaks(tostring(err), secrets, body) then
      error("the client secret appears in the error")
    end
  end
  for _, entry in ipairs(logs) do check_log(entry, status, secrets, body) end
  check_token_string(tostring(tm.tok))
  if tostring(tm) ~= "skewguard.token_manager{client_credentials, " .. tostring(tm.tok) .. "}" then
    error("unexpected tostring of the manager")
  end
  local est_text = tostring(est)
  if not (est_text:find("^skewguard%.skew{no samples}: 0x%x+$")
      or est_text:find("^skewguard%.skew{skew=[+-][%d.]+ s %+/%- [%d.]+ s, %d+ samples}: 0x%x+$")) then
    error("unexpected tostring of the estimator")
  end
  tm:close()
end

local function reader(s)
  local r = require("bytes").reader(s)
  function r.value()
    local kind = r.byte() % 8
    if kind == 0 then return nil
    elseif kind == 1 then return r.str(64)
    elseif kind == 2 then return r.double()
    elseif kind == 3 then return r.byte() * 60
    elseif kind == 4 then return r.byte() % 2 == 0
    elseif kind == 5 then return {}
    elseif kind == 6 then return tostring(r.byte() * 100)
    else return "bearer" end
  end
  return r
end

local function via_accept(input)
  local r = reader(input)
  local tok = core.token({ client_id = "fuzz-client", client_secret = SECRET })
  local answer = { access_token = r.value(), expires_in = r.value(), token_type = r.value(),
    refresh_token = r.value() }
  local opts = {}
  local flags = r.byte()
  local t_send = 1000
  if flags % 2 == 1 then opts.exp = r.double() end
  if flags % 4 >= 2 then opts.nbf = r.double() end
  if flags % 8 >= 4 then
    local lo = (r.byte() - 128) * 10
    opts.skew_lo, opts.skew_hi = lo, lo + r.byte() / 10
  end
  opts.t_send_wall = 1700000000
  opts.now = t_send + r.byte() / 10
  local gen, msg, kind = tok:accept(answer, t_send, opts)
  if gen then
    local access, state = tok:access_token(opts.now)
    if access ~= answer.access_token or not header_safe(access) then error("stored the wrong token") end
    if state == "expired" or state == "empty" then error("stored an expired token") end
    local info = tok:info(opts.now)
    if info.deadline > t_send + answer.expires_in then error("deadline beyond expires_in") end
    if info.mandatory > info.lifetime / 2 + 1e-9 or info.advisory < info.mandatory then
      error("refresh windows out of order")
    end
    if tok:has_refresh_token() ~= (type(answer.refresh_token) == "string") then
      error("refresh token presence differs from the answer")
    end
  else
    if kind ~= "token" or type(msg) ~= "string" then error("refused without kind token") end
    if not MESSAGES[template(msg)] then error("unexpected message: " .. msg) end
  end
  check_token_string(tostring(tok))
  tok:close()
end

return function(input)
  local mode = input:byte(1) or 0
  if mode % 2 == 0 then
    local status = STATUS[(input:byte(2) or 0) % #STATUS + 1]
    local date = (mode % 4 == 0) and "Sun, 06 Nov 1994 08:49:37 GMT" or core.format_http_date(core.wall())
    via_manager(status, input:sub(3), date)
  else
    via_accept(input:sub(2))
  end
end
