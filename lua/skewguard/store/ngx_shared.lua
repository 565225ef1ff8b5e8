--- A token store over `ngx.shared.DICT`: every worker of one nginx shares one
-- token and one renewal (docs/store.md, docs/openresty.md).
--
--   # nginx.conf, http {}
--   lua_shared_dict skewguard 1m;
--
--   local store = require("skewguard.store.ngx_shared").new{ dict = "skewguard" }
--   local client = genesys.new{ ..., store = store }
--
-- Records are JSON (cjson). The lock is `dict:add(lock_key, owner, ttl)`:
-- atomic across workers, gone by itself after ttl, so a worker killed mid-renewal
-- holds it at most that long. The owner string ends with the holder's worker pid
-- (`lock_holder()` reads it back, for status pages and tests).
--
-- Compare-then-delete. A shared dict has no compare-and-delete, only atomic
-- single calls, so `unlock` and `delete_if` are a get followed by a delete.
-- Between the two no other coroutine of this worker runs (there is no yield in
-- between), but another worker can act in that gap:
--   * unlock: the only thing another worker can do to a lock it does not hold is
--     take it after it expired. unlock deletes only a lock with more than
--     UNLOCK_MARGIN (0.1 s) left to live, which cannot expire in the microseconds
--     between the two calls; a lock closer to its end is left to lapse (the caller
--     is told it was released: it is, within 0.1 s).
--   * delete_if: records are written under the renewal lock (the token manager
--     writes only while holding it). delete_if takes that same lock (a short one)
--     around its get + delete, so no renewal can write in between. If a renewal
--     holds it, the record is about to be replaced anyway: delete_if returns false.
local core = require "skewguard.core"
local cjson = require "cjson.safe"
local errors = require "skewguard.errors"

local M = {}
local Store = {}
Store.__index = Store
Store.__name = "skewguard.store.ngx_shared"

local UNLOCK_MARGIN = 0.1
local DELETE_LOCK_TTL = 1

--- Builds the store. Raises outside nginx or when the dict is not declared.
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("skewguard.store.ngx_shared.new: options table expected", 2) end
  for k in pairs(opts) do
    if k ~= "dict" and k ~= "prefix" then
      error("skewguard.store.ngx_shared.new: unknown option " .. tostring(k), 2)
    end
  end
  local name = opts.dict or "skewguard"
  if type(name) ~= "string" then error("skewguard.store.ngx_shared.new: dict must be a string", 2) end
  if type(ngx) ~= "table" or type(ngx.shared) ~= "table" then
    error("skewguard.store.ngx_shared: needs nginx with the Lua module (ngx.shared)", 2)
  end
  local dict = ngx.shared[name]
  if not dict then
    error(("skewguard.store.ngx_shared: no shared dict %q: add `lua_shared_dict %s 1m;` to the http block")
      :format(name, name), 2)
  end
  local prefix = opts.prefix or ""
  if type(prefix) ~= "string" then error("skewguard.store.ngx_shared.new: prefix must be a string", 2) end
  return setmetatable({ dict = dict, name = name, prefix = prefix }, Store)
end

local function check_key(key)
  if type(key) ~= "string" or key == "" then error("skewguard.store: key must be a non-empty string", 3) end
end

local function check_ttl(ttl)
  if type(ttl) ~= "number" or ttl ~= ttl or ttl <= 0 or ttl == math.huge then
    error("skewguard.store: ttl must be a positive number of seconds", 3)
  end
end

local function failed(self, op, err)
  return nil, errors.new("unavailable", ("shared dict %s: %s failed: %s"):format(self.name, op, tostring(err)))
end

function Store:_rkey(key) return self.prefix .. key end
function Store:_lkey(key) return self.prefix .. "lock:" .. key end

--- record | false | nil, err
function Store:get(key)
  check_key(key)
  local json, err = self.dict:get(self:_rkey(key))
  if json == nil then
    if err then return failed(self, "get", err) end
    return false
  end
  local rec = type(json) == "string" and cjson.decode(json)
  -- something else under our key: no record as far as we can tell
  if type(rec) ~= "table" then return false end
  return rec
end

--- true | nil, err ("no memory" when the dict is full even after evicting)
function Store:set(key, record, ttl)
  check_key(key)
  check_ttl(ttl)
  if type(record) ~= "table" then error("skewguard.store: record must be a table", 2) end
  local json, jerr = cjson.encode(record)
  if not json then error("skewguard.store: record cannot be serialised: " .. tostring(jerr), 2) end
  local ok, err = self.dict:set(self:_rkey(key), json, ttl)
  if not ok then return failed(self, "set", err) end
  return true
end

--- owner | false | nil, err
function Store:lock(key, ttl)
  check_key(key)
  check_ttl(ttl)
  local owner = core.random_hex(12) .. ":" .. tostring(ngx.worker and ngx.worker.pid() or 0)
  local ok, err = self.dict:add(self:_lkey(key), owner, ttl)
  if ok then return owner end
  if err == "exists" then return false end
  return failed(self, "lock", err)
end

--- true | false | nil, err (see the note on compare-then-delete above)
function Store:unlock(key, owner)
  check_key(key)
  local lkey = self:_lkey(key)
  local held, err = self.dict:get(lkey)
  if held == nil and err then return failed(self, "unlock", err) end
  if held ~= owner then return false end
  local left = self.dict:ttl(lkey)
  if left and left > 0 and left < UNLOCK_MARGIN then return true end -- lapses by itself
  self.dict:delete(lkey)
  return true
end

--- true | false | nil, err
function Store:delete_if(key, id)
  check_key(key)
  local lkey = self:_lkey(key)
  local ok, err = self.dict:add(lkey, "delete_if:" .. tostring(ngx.worker and ngx.worker.pid() or 0), DELETE_LOCK_TTL)
  if not ok then
    if err == "exists" then return false end -- a renewal is writing the next record
    return failed(self, "delete_if", err)
  end
  local rec = self:get(key)
  local deleted = false
  if rec and rec.id == id then
    self.dict:delete(self:_rkey(key))
    deleted = true
  end
  self.dict:delete(lkey)
  return deleted
end

--- Diagnostics: the pid of the worker holding the renewal lock and seconds it
-- has left, or nil when nobody holds it.
function Store:lock_holder(key)
  check_key(key)
  local lkey = self:_lkey(key)
  local owner = self.dict:get(lkey)
  if type(owner) ~= "string" then return nil end
  return tonumber(owner:match(":(%d+)$")), self.dict:ttl(lkey)
end

function Store:__tostring()
  return ("skewguard.store.ngx_shared{dict=%s}"):format(self.name)
end

return M
