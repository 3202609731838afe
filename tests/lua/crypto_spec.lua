-- weir.crypto through the sandbox: published vectors and the contracts.
local crypto = require "weir.crypto"

describe("crypto hashes", function()
  it("computes SHA-256 (FIPS 180-2 vectors)", function()
    assert.equals("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                  crypto.sha256_hex(""))
    assert.equals("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                  crypto.sha256_hex("abc"))
    assert.equals(32, #crypto.sha256("abc"))
    assert.equals(crypto.sha256_hex("abc"), crypto.hex_encode(crypto.sha256("abc")))
  end)

  it("computes HMAC-SHA-256 (RFC 4231 cases 1 and 2)", function()
    assert.equals("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
                  crypto.hmac_sha256_hex(string.rep("\x0b", 20), "Hi There"))
    assert.equals("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                  crypto.hmac_sha256_hex("Jefe", "what do ya want for nothing?"))
    assert.equals(32, #crypto.hmac_sha256("k", "m"))
  end)
end)

describe("crypto encodings", function()
  it("encodes and decodes base64 (RFC 4648 vectors)", function()
    local vectors = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v",
                      foob = "Zm9vYg==", fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
    for plain, encoded in pairs(vectors) do
      assert.equals(encoded, crypto.base64_encode(plain))
      assert.equals(plain, crypto.base64_decode(encoded))
    end
  end)

  it("uses the url alphabet without padding for base64url", function()
    assert.equals("-_-_", crypto.base64url_encode("\xfb\xff\xbf"))
    assert.equals("Zg", crypto.base64url_encode("f"))
    assert.equals("f", crypto.base64url_decode("Zg"))
    assert.equals("f", crypto.base64url_decode("Zg=="))
  end)

  it("returns nil and a message for invalid input instead of raising", function()
    local v, err = crypto.base64_decode("Zm9v!A==")
    assert.is_nil(v)
    expect(err).to_contain("invalid base64")
    v, err = crypto.base64url_decode("+/+/")
    assert.is_nil(v)
    expect(err).to_contain("invalid base64url")
    v, err = crypto.hex_decode("abc")
    assert.is_nil(v)
    expect(err).to_contain("odd length")
    v, err = crypto.hex_decode("zz")
    assert.is_nil(v)
    expect(err).to_contain("invalid hex digit")
  end)

  it("round-trips hex in either case", function()
    assert.equals("00ff10", crypto.hex_encode("\0\255\16"))
    assert.equals("\0\255\16", crypto.hex_decode("00FF10"))
  end)
end)

describe("crypto random values", function()
  it("makes version 4 UUIDs", function()
    local pat = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
    local seen = {}
    for _ = 1, 100 do
      local u = crypto.uuid4()
      expect(u).to_match(pat)
      assert.is_nil(seen[u])
      seen[u] = true
    end
  end)

  it("returns n random bytes, bounded to 1 MiB", function()
    assert.equals(16, #crypto.random_bytes(16))
    assert.equals("", crypto.random_bytes(0))
    assert.is_false(crypto.random_bytes(32) == crypto.random_bytes(32))
    assert.has_error(function() crypto.random_bytes(1048577) end, "1 MiB")
    assert.has_error(function() crypto.random_bytes(-1) end, "bad argument #1")
  end)
end)

describe("crypto.constant_time_eq", function()
  it("compares strings", function()
    assert.is_true(crypto.constant_time_eq("token", "token"))
    assert.is_false(crypto.constant_time_eq("token", "tokeN"))
    assert.is_false(crypto.constant_time_eq("token", "token2"))
    assert.is_true(crypto.constant_time_eq("", ""))
  end)
end)
