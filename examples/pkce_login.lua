-- PKCE login for a public OAuth client (no secret): prints the authorize URL, waits for
-- the browser's redirect on a local listener, exchanges the code, calls the API.
--   GENESYS_CLIENT_ID=<public client id> lua5.4 examples/pkce_login.lua eu-west-1 [--browser CMD]
-- The redirect URI registered for the OAuth client must be http://127.0.0.1:<port>/callback
-- (pass --port; default: a free port, printed). --browser CMD runs `CMD <url>` to open it
-- (e.g. xdg-open); without it, open the printed URL yourself.
local sg = require "skewguard"
local socket = require "socket"

local where, browser, port = nil, nil, 0
local i = 1
while i <= #arg do
  if arg[i] == "--browser" then browser = arg[i + 1]; i = i + 1
  elseif arg[i] == "--port" then port = tonumber(arg[i + 1]); i = i + 1
  else where = arg[i] end
  i = i + 1
end
where = where or "us-east-1"

local listener = assert(socket.bind("127.0.0.1", port))
listener:settimeout(120)
local _, bound = listener:getsockname()
local redirect_uri = string.format("http://127.0.0.1:%d/callback", bound)

local opts = { grant = "pkce", client_id = assert(os.getenv("GENESYS_CLIENT_ID"), "set GENESYS_CLIENT_ID") }
if where:match("^https?://") then opts.login_url = where else opts.region = where end
local client = sg.genesys.new(opts)

local verifier = sg.core.pkce_verifier(64)
local state = sg.core.b64url_encode(sg.core.pkce_verifier(43)):sub(1, 22)
local url = client:authorize_url { redirect_uri = redirect_uri, code_challenge = sg.core.pkce_challenge(verifier),
  state = state }
print("open this URL to log in:\n  " .. url)
if browser then os.execute(browser .. " '" .. url:gsub("'", "'\\''") .. "' >/dev/null 2>&1 &") end

-- The browser arrives with GET /callback?code=...&state=...
local conn = assert(listener:accept())
conn:settimeout(10)
local request_line = conn:receive("*l") or ""
repeat local line = conn:receive("*l") until not line or line == ""
local query = request_line:match("^GET /callback%?(%S*) HTTP") or ""
local params = {}
for k, v in query:gmatch("([^&=]+)=([^&]*)") do
  params[k] = v:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
end
local ok = params.code and params.state == state
conn:send("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
  .. (ok and "Logged in: you can close this window.\n" or "Login failed.\n"))
conn:close()
listener:close()
if not ok then
  io.stderr:write("pkce_login: no code, or the state did not match (", tostring(params.error), ")\n")
  os.exit(1)
end

local gen, err = client:login { code = params.code, code_verifier = verifier, redirect_uri = redirect_uri }
if not gen then io.stderr:write("pkce_login: ", tostring(err), "\n"); os.exit(1) end
local res, aerr = client:get("/api/v2/tokens/me")
if not res then io.stderr:write("pkce_login: ", tostring(aerr), "\n"); os.exit(1) end
print("logged in; GET /api/v2/tokens/me -> " .. res.status .. " (token " .. client.tokens:info().fingerprint .. ")")
client:close()
