-- Sealing records for a shared store: AES-256-GCM, key from the client secret by HKDF,
-- the store key as authenticated data.
local core = require "skewguard.core"

describe("record sealing", function()
  local secret, key = "client-secret-1", "skewguard:0123456789abcdef"
  local record = '{"access_token":"AT-very-secret-token","expires_at":1795737433.9}'

  it("round-trips, and the blob is version || nonce || ciphertext || tag", function()
    local blob = assert(core.seal(secret, key, record))
    assert.equal(1 + 12 + #record + 16, #blob)
    assert.equal(1, blob:byte(1))
    assert.is_nil(blob:find("AT-very-secret-token", 1, true))
    assert.is_nil(blob:find("access_token", 1, true))
    assert.equal(record, core.unseal(secret, key, blob))
    assert.equal("", core.unseal(secret, key, assert(core.seal(secret, key, ""))))
  end)

  it("rejects a blob with any single byte changed", function()
    local blob = assert(core.seal(secret, key, record))
    for i = 1, #blob do
      local flipped = blob:sub(1, i - 1) .. string.char((blob:byte(i) + 1) % 256) .. blob:sub(i + 1)
      local pt, msg, kind = core.unseal(secret, key, flipped)
      assert.is_nil(pt, "byte " .. i)
      assert.equal("bogus", kind)
      assert.is_nil(msg:find(secret, 1, true))
    end
  end)

  it("rejects truncated and extended blobs", function()
    local blob = assert(core.seal(secret, key, record))
    for _, b in ipairs({ "", blob:sub(1, 28), blob:sub(1, -2), blob .. "x", blob:sub(2) }) do
      local pt, _, kind = core.unseal(secret, key, b)
      assert.is_nil(pt)
      assert.equal("bogus", kind)
    end
  end)

  it("rejects another secret and another store key (a record moved between keys)", function()
    local blob = assert(core.seal(secret, key, record))
    assert.equal("bogus", select(3, core.unseal("client-secret-2", key, blob)))
    assert.equal("bogus", select(3, core.unseal(secret, key .. "x", blob)))
    assert.equal("bogus", select(3, core.unseal(secret, "", blob)))
  end)

  it("uses a fresh nonce for every seal", function()
    local nonces = {}
    for _ = 1, 500 do
      local blob = core.seal(secret, key, record)
      local nonce = blob:sub(2, 13)
      assert.is_nil(nonces[nonce])
      nonces[nonce] = true
    end
  end)

  it("raises on misuse: empty secret, non-string arguments", function()
    assert.has_error(function() core.seal("", key, record) end)
    assert.has_error(function() core.seal(secret, nil, record) end)
    assert.has_error(function() core.unseal(secret, key, nil) end)
  end)
end)
