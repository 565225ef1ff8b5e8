-- List every routing queue, following the pages (nextUri) for you.
--   GENESYS_CLIENT_ID=... GENESYS_CLIENT_SECRET=... lua5.4 examples/list_queues.lua eu-west-1
-- The argument is a region (AWS-style name or domain) or a base URL (a gateway, the stand-in).
local sg = require "skewguard"

local where = arg[1] or "us-east-1"
local opts = {
  client_id = assert(os.getenv("GENESYS_CLIENT_ID"), "set GENESYS_CLIENT_ID"),
  client_secret = assert(os.getenv("GENESYS_CLIENT_SECRET"), "set GENESYS_CLIENT_SECRET"),
}
if where:match("^https?://") then opts.login_url = where else opts.region = where end
local client = sg.genesys.new(opts)

local n = 0
for queue, err in client:paginate("/api/v2/routing/queues", { pageSize = 25 }) do
  if not queue then
    io.stderr:write("list_queues: ", tostring(err), "\n")
    os.exit(1)
  end
  n = n + 1
  print(string.format("%-38s %s", queue.id, queue.name))
end
local stats = client:stats()
print(string.format("%d queues in %d requests; skew %+.3f s", n, stats.requests, (client:skew() or 0)))
client:close()
