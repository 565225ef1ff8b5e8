-- wrk script (not a busted file): counts responses by status across threads and
-- prints "status <code> <count>" lines and the socket error counts at the end.
-- Optional path: wrk ... -s wrk_status.lua URL -- /path
-- luacheck: globals setup init response done statuses wrk
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  statuses = {}
  if args[1] then wrk.path = args[1] end
end

function response(status)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary)
  local total = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do total[code] = (total[code] or 0) + n end
  end
  for code, n in pairs(total) do io.write(("status %d %d\n"):format(code, n)) end
  local e = summary.errors
  io.write(("errors connect=%d read=%d write=%d timeout=%d\n"):format(e.connect, e.read, e.write, e.timeout))
  io.write(("requests %d duration_us %d\n"):format(summary.requests, summary.duration))
end
