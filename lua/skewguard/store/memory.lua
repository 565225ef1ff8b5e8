--- A token store in this process's memory: the reference implementation of the
-- store interface (docs/store.md). Token managers of one process that share it
-- share one token and one renewal; across processes use skewguard.store.ngx_shared
-- (nginx workers) or skewguard.store.redis (hosts).
--
--   local store = require("skewguard.store.memory").new{ now = nil }
--
-- `now` (a function returning seconds on a monotonic clock; default
-- skewguard.core.monotonic) drives the TTLs, so specs can expire locks and
-- records without sleeping. Records are kept serialised (JSON), as every other
-- store keeps them: a reader never shares a table with the writer.
local core = require "skewguard.core"
local cjson = require "cjson.safe"

local M = {}
local Store = {}
Store.__index = Store
Store.__name = "skewguard.store.memory"

function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("skewguard.store.memory.new: options table expected", 2) end
  for k, v in pairs(opts) do
    if k ~= "now" then error("skewguard.store.memory.new: unknown option " .. tostring(k), 2) end
    if type(v) ~= "function" then error("skewguard.store.memory.new: now must be a function", 2) end
  end
  return setmetatable({ now = opts.now or core.monotonic, records = {}, locks = {} }, Store)
end

local function check_key(key)
  if type(key) ~= "string" or key == "" then error("skewguard.store: key must be a non-empty string", 3) end
end

local function check_ttl(ttl)
  if type(ttl) ~= "number" or ttl ~= ttl or ttl <= 0 or ttl == math.huge then
    error("skewguard.store: ttl must be a positive number of seconds", 3)
  end
end

-- The live entry under key in `map`, dropping an expired one.
local function live(self, map, key)
  local e = map[key]
  if e and e.expires <= self.now() then
    map[key] = nil
    return nil
  end
  return e
end

--- record | false
function Store:get(key)
  check_key(key)
  local e = live(self, self.records, key)
  if not e then return false end
  return cjson.decode(e.json)
end

--- true. Raises when the record is not a table that JSON can carry.
function Store:set(key, record, ttl)
  check_key(key)
  check_ttl(ttl)
  if type(record) ~= "table" then error("skewguard.store: record must be a table", 2) end
  local json, err = cjson.encode(record)
  if not json then error("skewguard.store: record cannot be serialised: " .. tostring(err), 2) end
  self.records[key] = { json = json, expires = self.now() + ttl }
  return true
end

--- true when the record under key had this id and is now gone; false otherwise.
function Store:delete_if(key, id)
  check_key(key)
  local e = live(self, self.records, key)
  if not e then return false end
  local rec = cjson.decode(e.json)
  if type(rec) ~= "table" or rec.id ~= id then return false end
  self.records[key] = nil
  return true
end

--- owner (random) | false when another holds an unexpired lock.
function Store:lock(key, ttl)
  check_key(key)
  check_ttl(ttl)
  if live(self, self.locks, key) then return false end
  local owner = core.random_hex(16)
  self.locks[key] = { owner = owner, expires = self.now() + ttl }
  return owner
end

--- true when `owner` still held the lock (now released); false otherwise.
function Store:unlock(key, owner)
  check_key(key)
  local e = live(self, self.locks, key)
  if not e or e.owner ~= owner then return false end
  self.locks[key] = nil
  return true
end

function Store:__tostring()
  local n = 0
  for _ in pairs(self.records) do n = n + 1 end
  return ("skewguard.store.memory{%d records}"):format(n)
end

return M
