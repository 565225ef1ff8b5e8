local core = require "skewguard.core"

describe("PKCE", function()
  it("reproduces the S256 example of RFC 7636 appendix B", function()
    assert.equal("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
      core.pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"))
  end)

  it("makes verifiers of the asked length from the unreserved characters", function()
    for _, len in ipairs({ 43, 64, 100, 128 }) do
      local v = core.pkce_verifier(len)
      assert.equal(len, #v)
      assert.is_nil(v:find("[^A-Za-z0-9._~-]"))
      assert.equal(43, #core.pkce_challenge(v))
    end
    assert.equal(64, #core.pkce_verifier())
  end)

  it("never repeats a verifier and uses all 66 characters about evenly", function()
    local seen, counts, total = {}, {}, 0
    for _ = 1, 2000 do
      local v = core.pkce_verifier(128)
      assert.is_nil(seen[v])
      seen[v] = true
      for c in v:gmatch(".") do counts[c] = (counts[c] or 0) + 1; total = total + 1 end
    end
    local distinct, lo, hi = 0, math.huge, 0
    for _, n in pairs(counts) do
      distinct = distinct + 1
      lo, hi = math.min(lo, n), math.max(hi, n)
    end
    assert.equal(66, distinct)
    -- expected 3879 each (sd ~ 62); a plain modulo would put the first 58 at ~4000
    -- and the last 8 at ~3000, outside these bounds
    local expected = total / 66
    assert.is_true(lo > expected * 0.9 and hi < expected * 1.1, ("range %d..%d"):format(lo, hi))
  end)

  it("raises on a verifier length outside 43..128 (misuse)", function()
    assert.has_error(function() core.pkce_verifier(42) end)
    assert.has_error(function() core.pkce_verifier(129) end)
    assert.has_error(function() core.pkce_verifier("x") end)
  end)

  it("raises on a malformed verifier when asked for its challenge (misuse)", function()
    assert.has_error(function() core.pkce_challenge(string.rep("a", 42)) end)
    assert.has_error(function() core.pkce_challenge(string.rep("a", 129)) end)
    assert.has_error(function() core.pkce_challenge(string.rep("a", 42) .. "+") end)
    assert.has_error(function() core.pkce_challenge(string.rep("a", 42) .. " ") end)
    assert.has_error(function() core.pkce_challenge(string.rep("a", 42) .. "\0") end)
    assert.has_error(function() core.pkce_challenge(nil) end)
  end)
end)
