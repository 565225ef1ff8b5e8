-- skewguard.store.redis against a real redis-server on loopback (started and stopped
-- here): the store interface of docs/store.md, sealing, AUTH/ACL, SELECT, TLS through
-- LuaSec, and Redis going away and coming back.
local redis_server = require "support.redis_server"
local redis_store = require "skewguard.store.redis"
local core = require "skewguard.core"
local socket = require "socket"

local SECRET = "client-secret-for-sealing"
local ACCESS = "AT-" .. string.rep("s3cr3t", 8)

local function new_record(id, extra)
  local r = { v = 1, id = id or core.random_hex(16), access_token = ACCESS, token_type = "bearer",
    expires_at = 1795737433.9, lifetime = 3600, issuer_skew = -7.3, issuer_uncertainty = 0.004,
    generation = 12 }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

local function new_key() return "skewguard:" .. core.random_hex(16) end

describe("redis store", function()
  local rs, store

  setup(function()
    rs = redis_server.start {}
  end)
  teardown(function() if rs then rs:destroy() end end)

  before_each(function()
    store = redis_store.new { port = rs.port, secret = SECRET, timeout = 1, retry_interval = 0.2 }
  end)
  after_each(function() store:close() end)

  it("get: false when there is no record", function()
    assert.is_false(store:get(new_key()))
  end)

  it("set then get returns the record; the Redis TTL follows ttl", function()
    local key, rec = new_key(), new_record()
    assert.is_true(store:set(key, rec, 90))
    assert.same(rec, store:get(key))
    local pttl = rs:cli("PTTL", key)
    assert.is_true(pttl > 89000 and pttl <= 90000, "PTTL " .. tostring(pttl))
    -- another store object (another host) with the same secret reads it too
    local other = redis_store.new { port = rs.port }
    other:use_secret(SECRET)
    assert.same(rec, other:get(key))
    other:close()
  end)

  it("the key expires with the ttl: dead records clean themselves up", function()
    local key = new_key()
    assert.is_true(store:set(key, new_record(), 0.15))
    assert.is_table(store:get(key))
    core.sleep(0.25)
    assert.is_false(store:get(key))
    assert.equal(0, rs:cli("EXISTS", key))
  end)

  it("keeps only ciphertext in Redis: the raw value holds no token bytes", function()
    local key, rec = new_key(), new_record()
    assert.is_true(store:set(key, rec, 60))
    local raw = rs:cli("GET", key)
    assert.is_string(raw)
    assert.equal(rec.id .. "\n", raw:sub(1, #rec.id + 1))
    assert.is_nil(raw:find(ACCESS, 1, true))
    assert.is_nil(raw:find("s3cr3t", 1, true))
    assert.is_nil(raw:find("access_token", 1, true))
    assert.is_nil(raw:find("1795737433", 1, true))
  end)

  it("rejects a record tampered with in Redis: false, a bogus error and a warning", function()
    local warnings = {}
    store = redis_store.new { port = rs.port, secret = SECRET,
      logger = function(level, msg, fields) warnings[#warnings + 1] = { level, msg, fields } end }
    local key, rec = new_key(), new_record()
    assert.is_true(store:set(key, rec, 60))
    local raw = rs:cli("GET", key)
    local at = #raw - 20
    local tampered = raw:sub(1, at - 1) .. string.char((raw:byte(at) + 1) % 256) .. raw:sub(at + 1)
    assert.same({ ok = "OK" }, rs:cli("SET", key, tampered, "KEEPTTL"))
    local got, err = store:get(key)
    assert.is_false(got)
    assert.equal("bogus", err.kind)
    assert.equal(1, store:stats().bogus)
    assert.equal(1, #warnings)
    assert.equal("warn", warnings[1][1])
    assert.is_nil(tostring(err):find(ACCESS, 1, true))
    -- a renewal then simply overwrites it
    assert.is_true(store:set(key, new_record(), 60))
    assert.is_table(store:get(key))
  end)

  it("rejects a record moved to another key, a swapped id, and another secret", function()
    local key, rec = new_key(), new_record()
    assert.is_true(store:set(key, rec, 60))
    local raw = rs:cli("GET", key)
    local moved = new_key()
    rs:cli("SET", moved, raw)
    assert.equal("bogus", select(2, store:get(moved)).kind)
    rs:cli("SET", key, "other-id" .. raw:sub(#rec.id + 1))
    assert.equal("bogus", select(2, store:get(key)).kind)
    rs:cli("SET", key, raw)
    local stranger = redis_store.new { port = rs.port, secret = "another-client-secret" }
    local got, err = stranger:get(key)
    assert.is_false(got)
    assert.equal("bogus", err.kind)
    stranger:close()
    assert.same(rec, store:get(key))
  end)

  it("delete_if deletes only the record with that id", function()
    local key, rec = new_key(), new_record()
    assert.is_false(store:delete_if(key, rec.id))
    assert.is_true(store:set(key, rec, 60))
    assert.is_false(store:delete_if(key, core.random_hex(16)))
    -- a prefix of the id is another id
    assert.is_false(store:delete_if(key, rec.id:sub(1, 8)))
    assert.same(rec, store:get(key))
    assert.is_true(store:delete_if(key, rec.id))
    assert.is_false(store:get(key))
    assert.is_false(store:delete_if(key, rec.id))
  end)

  it("lock: one holder at a time; unlock only by the owner", function()
    local key = new_key()
    local owner = store:lock(key, 5)
    assert.truthy(owner and owner:match("^%x+$") and #owner == 32)
    local other = redis_store.new { port = rs.port, secret = SECRET }
    assert.is_false(other:lock(key, 5))
    assert.is_false(other:unlock(key, core.random_hex(16)))
    assert.equal(owner, rs:cli("GET", key .. ":lock"))
    local pttl = rs:cli("PTTL", key .. ":lock")
    assert.is_true(pttl > 4000 and pttl <= 5000)
    assert.is_true(store:unlock(key, owner))
    assert.is_false(store:unlock(key, owner))
    local owner2 = other:lock(key, 5)
    assert.truthy(owner2)
    assert.are_not.equal(owner, owner2)
    assert.is_true(other:unlock(key, owner2))
    other:close()
  end)

  it("lock expires by itself and is taken over; the late owner cannot unlock the new one", function()
    local key = new_key()
    local dead = assert(store:lock(key, 0.2))
    local other = redis_store.new { port = rs.port, secret = SECRET }
    assert.is_false(other:lock(key, 5))
    core.sleep(0.3)
    local taker = other:lock(key, 5)
    assert.truthy(taker)
    assert.is_false(store:unlock(key, dead))
    assert.equal(taker, rs:cli("GET", key .. ":lock"))
    assert.is_true(other:unlock(key, taker))
    other:close()
  end)

  it("raises on misuse (programming errors)", function()
    assert.has_error(function() redis_store.new { hots = "x" } end, "skewguard.store.redis.new: unknown option hots")
    assert.has_error(function() redis_store.new { port = "6379" } end)
    assert.has_error(function() redis_store.new { socket = "udp" } end)
    assert.has_error(function() redis_store.new { username = "u" } end)
    assert.has_error(function() store:set(new_key(), new_record(), 0) end)
    assert.has_error(function() store:set(new_key(), { access_token = "x" }, 10) end)
    assert.has_error(function() store:lock(new_key(), -1) end)
    assert.has_error(function() store:get("") end)
    local no_secret = redis_store.new { port = rs.port }
    assert.has_error(function() no_secret:get(new_key()) end)
    assert.has_error(function() no_secret:use_secret("") end)
  end)

  it("keeps separate databases apart (SELECT)", function()
    local key, rec = new_key(), new_record()
    local db2 = redis_store.new { port = rs.port, secret = SECRET, db = 2 }
    assert.is_true(db2:set(key, rec, 60))
    assert.same(rec, db2:get(key))
    assert.is_false(store:get(key))
    db2:close()
  end)

  it("a server that accepts but never answers: unavailable within the timeout", function()
    local mute = assert(socket.bind("127.0.0.1", 0))
    local _, port = mute:getsockname()
    local s = redis_store.new { port = tonumber(port), secret = SECRET, timeout = 0.3 }
    local t0 = core.monotonic()
    local v, err = s:get(new_key())
    local took = core.monotonic() - t0
    assert.is_nil(v)
    assert.equal("unavailable", err.kind)
    assert.is_true(took >= 0.25 and took < 1, "took " .. took)
    -- and then it fails fast until retry_interval has passed
    t0 = core.monotonic()
    assert.equal("unavailable", select(2, s:lock(new_key(), 1)).kind)
    assert.is_true(core.monotonic() - t0 < 0.05)
    s:close()
    mute:close()
  end)

  it("stopped mid-test: unavailable quickly, then works again when it is back", function()
    local key, rec = new_key(), new_record()
    assert.is_true(store:set(key, rec, 60))
    rs:stop()
    local t0 = core.monotonic()
    for _, call in ipairs({
      function() return store:get(key) end,
      function() return store:set(key, rec, 60) end,
      function() return store:delete_if(key, rec.id) end,
      function() return store:lock(key, 1) end,
      function() return store:unlock(key, "x") end,
    }) do
      local v, err = call()
      assert.is_nil(v)
      assert.equal("unavailable", err.kind)
    end
    assert.is_true(core.monotonic() - t0 < 1.5)
    rs:start_again()
    core.sleep(0.25) -- retry_interval
    assert.is_false(store:get(key)) -- no persistence: the record went with the server
    assert.is_true(store:set(key, rec, 60))
    assert.same(rec, store:get(key))
  end)

  it("a server restarted under a kept connection: the next call reconnects", function()
    local key, rec = new_key(), new_record()
    assert.is_true(store:set(key, rec, 60))
    rs:stop()
    rs:start_again()
    assert.is_true(store:set(key, rec, 60))
    assert.same(rec, store:get(key))
    assert.equal(2, store:stats().connects)
  end)

  it("tostring names the server, never a secret", function()
    local s = redis_store.new { port = rs.port, password = "pw-in-tostring", secret = SECRET }
    assert.equal("skewguard.store.redis{127.0.0.1:" .. rs.port .. "}", tostring(s))
  end)
end)

describe("redis store with AUTH", function()
  local rs
  local PASSWORD = "requirepass-Zq9"

  setup(function()
    rs = redis_server.start { password = PASSWORD, users = {
      "user fleet on >fleet-pw-X7 ~skewguard:* +@all",
    } }
  end)
  teardown(function() if rs then rs:destroy() end end)

  local function try(opts)
    opts.port, opts.secret = rs.port, SECRET
    local s = redis_store.new(opts)
    local key = new_key()
    local ok, err = s:set(key, new_record(), 30)
    local got = ok and s:get(key)
    s:close()
    return ok, err, got
  end

  it("works with the password", function()
    local ok, err, got = try { password = PASSWORD }
    assert.is_nil(err)
    assert.is_true(ok)
    assert.is_table(got)
  end)

  it("works with an ACL user and its password", function()
    local ok, err = try { username = "fleet", password = "fleet-pw-X7" }
    assert.is_nil(err)
    assert.is_true(ok)
  end)

  it("no password: a typed error", function()
    local ok, err = try {}
    assert.is_nil(ok)
    assert.equal("unauthorized", err.kind)
    assert.equal("NOAUTH", err.redis_code)
  end)

  it("a wrong password or user: unauthorized, and the password is in no message", function()
    for _, opts in ipairs({ { password = "wrong-pw-Q1" }, { username = "fleet", password = "wrong-pw-Q1" },
        { username = "nobody", password = PASSWORD } }) do
      local ok, err = try(opts)
      assert.is_nil(ok)
      assert.equal("unauthorized", err.kind)
      assert.truthy(err.message:find("WRONGPASS", 1, true))
      assert.is_nil(tostring(err):find(opts.password, 1, true))
      assert.is_nil(tostring(err):find(PASSWORD, 1, true))
    end
  end)

  it("an ACL user without access to the key pattern: unauthorized (NOPERM)", function()
    local s = redis_store.new { port = rs.port, secret = SECRET, username = "fleet", password = "fleet-pw-X7",
      prefix = "elsewhere:" }
    local ok, err = s:set(new_key(), new_record(), 30)
    s:close()
    assert.is_nil(ok)
    assert.equal("unauthorized", err.kind)
    assert.equal("NOPERM", err.redis_code)
  end)
end)

describe("redis store over TLS (LuaSocket + LuaSec)", function()
  local rs

  setup(function() rs = redis_server.start { tls = true } end)
  teardown(function() if rs then rs:destroy() end end)

  it("works with the server's CA, and the certificate's names are checked", function()
    for _, name in ipairs({ "127.0.0.1", "localhost" }) do
      local s = redis_store.new { port = rs.tls_port, tls = true, ca_file = rs.ca_file, server_name = name,
        secret = SECRET }
      local key, rec = new_key(), new_record()
      local ok, err = s:set(key, rec, 30)
      assert.is_nil(err)
      assert.is_true(ok)
      assert.same(rec, s:get(key))
      s:close()
    end
  end)

  it("refuses a certificate for another name", function()
    local s = redis_store.new { port = rs.tls_port, tls = true, ca_file = rs.ca_file, server_name = "redis.example",
      secret = SECRET }
    local ok, err = s:get(new_key())
    assert.is_nil(ok)
    assert.equal("tls", err.kind)
    assert.truthy(err.message:find("does not match", 1, true))
  end)

  it("refuses a server its CA file does not vouch for", function()
    local s = redis_store.new { port = rs.tls_port, tls = true, ca_file = "/etc/ssl/certs/ca-certificates.crt",
      secret = SECRET }
    local ok, err = s:get(new_key())
    assert.is_nil(ok)
    assert.equal("tls", err.kind)
  end)

  it("plain TCP to the TLS port fails as unavailable, not a hang", function()
    local s = redis_store.new { port = rs.tls_port, secret = SECRET, timeout = 0.5 }
    local t0 = core.monotonic()
    local ok, err = s:get(new_key())
    assert.is_nil(ok)
    assert.is_true(err.kind == "unavailable" or err.kind == "protocol")
    assert.is_true(core.monotonic() - t0 < 1)
  end)
end)
