/*
 * test_crypto.c -- weir.crypto against published vectors (FIPS 180-2
 * SHA-256, RFC 4231 HMAC-SHA-256, RFC 4648 base64), plus the decoders'
 * nil-and-message contract, UUID v4 format, random_bytes bounds and
 * constant-time comparison.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "weir_crypto.h"

static int test_crypto_setup(void **st) {
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    luaL_openlibs(L);
    luaL_requiref(L, "weir.crypto", weir_open_crypto, 0);
    lua_setglobal(L, "crypto");
    *st = L;
    return 0;
}

static int test_crypto_teardown(void **st) {
    lua_close(*st);
    return 0;
}

static void run_lua(lua_State *L, const char *code) {
    if (luaL_loadstring(L, code) != LUA_OK)
        fail_msg("syntax: %s", lua_tostring(L, -1));
    if (lua_pcall(L, 0, 0, 0) != LUA_OK)
        fail_msg("%s", lua_tostring(L, -1));
}

/* Calls crypto.<fn>(arg) and returns the first result as a string (NULL
 * when it is nil).  The copy lives until the next call. */
static const char *call1(lua_State *L, const char *fn, const char *arg,
                         size_t arglen, size_t *outlen) {
    static char out[4096];
    size_t n = 0;
    const char *s;

    lua_settop(L, 0);
    lua_getglobal(L, "crypto");
    lua_getfield(L, -1, fn);
    lua_pushlstring(L, arg, arglen);
    if (lua_pcall(L, 1, 2, 0) != LUA_OK)
        fail_msg("crypto.%s raised: %s", fn, lua_tostring(L, -1));
    if (lua_isnil(L, -2)) {
        lua_settop(L, 0);
        return NULL;
    }
    s = lua_tolstring(L, -2, &n);
    assert_non_null(s);
    assert_true(n < sizeof out);
    memcpy(out, s, n);
    out[n] = '\0';
    if (outlen)
        *outlen = n;
    lua_settop(L, 0);
    return out;
}

static void hex_of(const char *s, size_t n, char *out) {
    weir_crypto_hex((const unsigned char *)s, n, out);
}

/* ------------------------------------------------------------------ */

static void test_sha256_fips_vectors(void **st) {
    lua_State *L = *st;
    static const struct { const char *in, *hex; } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    char hex[65];
    size_t i, n;

    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        const char *raw = call1(L, "sha256", v[i].in, strlen(v[i].in), &n);
        assert_int_equal(n, 32);
        hex_of(raw, n, hex);
        assert_string_equal(hex, v[i].hex);
        assert_string_equal(call1(L, "sha256_hex", v[i].in, strlen(v[i].in),
                                  NULL), v[i].hex);
    }
    /* One million 'a'. */
    run_lua(L, "assert(crypto.sha256_hex(string.rep('a', 1000000)) == "
               "'cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0')");
}

static void test_hmac_sha256_rfc4231(void **st) {
    /* RFC 4231 test cases 1, 2, 3, 4, 6 and 7 (5 truncates the output). */
    run_lua(*st,
        "local function x(h) return (h:gsub('..', function(c)\n"
        "  return string.char(tonumber(c, 16)) end)) end\n"
        "local cases = {\n"
        " {string.rep('\\x0b', 20), 'Hi There',\n"
        "  'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7'},\n"
        " {'Jefe', 'what do ya want for nothing?',\n"
        "  '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'},\n"
        " {string.rep('\\xaa', 20), string.rep('\\xdd', 50),\n"
        "  '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe'},\n"
        " {x('0102030405060708090a0b0c0d0e0f10111213141516171819'),\n"
        "  string.rep('\\xcd', 50),\n"
        "  '82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b'},\n"
        " {string.rep('\\xaa', 131),\n"
        "  'Test Using Larger Than Block-Size Key - Hash Key First',\n"
        "  '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54'},\n"
        " {string.rep('\\xaa', 131),\n"
        "  'This is a test using a larger than block-size key and a larger '\n"
        "  .. 'than block-size data. The key needs to be hashed before being '\n"
        "  .. 'used by the HMAC algorithm.',\n"
        "  '9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2'},\n"
        "}\n"
        "for i, c in ipairs(cases) do\n"
        "  assert(crypto.hmac_sha256_hex(c[1], c[2]) == c[3], 'case ' .. i)\n"
        "  local raw = crypto.hmac_sha256(c[1], c[2])\n"
        "  assert(#raw == 32 and raw == x(c[3]), 'raw case ' .. i)\n"
        "end\n"
        /* An empty key is a valid HMAC key. */
        "assert(crypto.hmac_sha256_hex('', '') == "
        "'b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad')\n"
        "assert(not pcall(crypto.hmac_sha256, nil, 'x'))");
}

static void test_base64_rfc4648(void **st) {
    lua_State *L = *st;
    static const struct { const char *in, *b64, *url; } v[] = {
        {"", "", ""},
        {"f", "Zg==", "Zg"},
        {"fo", "Zm8=", "Zm8"},
        {"foo", "Zm9v", "Zm9v"},
        {"foob", "Zm9vYg==", "Zm9vYg"},
        {"fooba", "Zm9vYmE=", "Zm9vYmE"},
        {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
    };
    size_t i, n;

    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t len = strlen(v[i].in);
        assert_string_equal(call1(L, "base64_encode", v[i].in, len, NULL),
                            v[i].b64);
        assert_string_equal(call1(L, "base64url_encode", v[i].in, len, NULL),
                            v[i].url);
        assert_string_equal(call1(L, "base64_decode", v[i].b64,
                                  strlen(v[i].b64), &n), v[i].in);
        assert_int_equal(n, len);
        /* base64url: padding optional on decode. */
        assert_string_equal(call1(L, "base64url_decode", v[i].url,
                                  strlen(v[i].url), NULL), v[i].in);
        assert_string_equal(call1(L, "base64url_decode", v[i].b64,
                                  strlen(v[i].b64), NULL), v[i].in);
        assert_string_equal(call1(L, "base64_decode", v[i].url,
                                  strlen(v[i].url), NULL), v[i].in);
    }
    /* The two alphabets differ in 62 and 63. */
    assert_string_equal(call1(L, "base64_encode", "\xfb\xff\xbf", 3, NULL),
                        "+/+/");
    assert_string_equal(call1(L, "base64url_encode", "\xfb\xff\xbf", 3, NULL),
                        "-_-_");
    assert_string_equal(call1(L, "base64url_decode", "-_-_", 4, NULL),
                        "\xfb\xff\xbf");
    run_lua(L, "local s = ''\n"
               "for i = 0, 255 do s = s .. string.char(i) end\n"
               "for n = 0, 256 do\n"
               "  local p = s:sub(1, n)\n"
               "  assert(crypto.base64_decode(crypto.base64_encode(p)) == p)\n"
               "  local u = crypto.base64url_encode(p)\n"
               "  assert(not u:find('[=+/]'))\n"
               "  assert(crypto.base64url_decode(u) == p)\n"
               "end");
}

static void test_base64_invalid_returns_nil(void **st) {
    run_lua(*st,
        "local function bad(fn, s, what)\n"
        "  local v, err = crypto[fn](s)\n"
        "  assert(v == nil, fn .. ' accepted ' .. s)\n"
        "  assert(type(err) == 'string' and err:find(what, 1, true), err)\n"
        "end\n"
        "bad('base64_decode', 'Z', 'invalid length')\n"
        "bad('base64_decode', 'Zg=', 'invalid length')\n"
        "bad('base64_decode', 'Zm9vY', 'invalid length')\n"
        "bad('base64_decode', 'Zm9v!A==', 'invalid base64 input')\n"
        "bad('base64_decode', 'Zm 9vYg=', 'invalid base64 input')\n"
        "bad('base64_decode', ' Zm9vYg', 'invalid base64 input')\n"
        "bad('base64_decode', 'Zm9v\\n', 'invalid')\n"
        "bad('base64_decode', 'Zm=v', 'invalid base64 input')\n"
        "bad('base64_decode', '-_-_', 'invalid base64 input')\n"
        /* non-zero bits after the last byte: not a canonical encoding */
        "bad('base64_decode', 'Zh==', 'invalid base64 input')\n"
        "bad('base64url_decode', '+/+/', 'invalid base64url input')\n"
        "bad('base64url_decode', 'Zg===', 'invalid')\n"
        "assert(not pcall(crypto.base64_decode, {}))");
}

static void test_hex(void **st) {
    lua_State *L = *st;
    const char *decoded;
    size_t n;

    assert_string_equal(call1(L, "hex_encode", "\x00\x01\xab\xff", 4, NULL),
                        "0001abff");
    assert_string_equal(call1(L, "hex_encode", "", 0, NULL), "");
    decoded = call1(L, "hex_decode", "0001ABff", 8, &n);
    assert_int_equal(n, 4);
    assert_memory_equal(decoded, "\x00\x01\xab\xff", 4);
    run_lua(L, "local v, err = crypto.hex_decode('abc')\n"
               "assert(v == nil and err:find('odd length 3'))\n"
               "v, err = crypto.hex_decode('zz')\n"
               "assert(v == nil and err:find('invalid hex digit at byte 1'))\n"
               "v, err = crypto.hex_decode('0g')\n"
               "assert(v == nil and err:find('invalid hex digit at byte 2'))\n"
               "assert(crypto.hex_decode('') == '')\n"
               "local s = crypto.random_bytes(100)\n"
               "assert(crypto.hex_decode(crypto.hex_encode(s)) == s)");
}

static void test_uuid4(void **st) {
    char u[37];
    int i;

    for (i = 0; i < 100; i++) {
        assert_int_equal(weir_crypto_uuid4(u), 0);
        assert_int_equal(strlen(u), 36);
        assert_int_equal(u[14], '4');
        assert_non_null(strchr("89ab", u[19]));
    }
    run_lua(*st,
        "local pat = '^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-"
        "%x%x%x%x%x%x%x%x%x%x%x%x$'\n"
        "local seen = {}\n"
        "for i = 1, 1000 do\n"
        "  local u = crypto.uuid4()\n"
        "  assert(u:match(pat), u)\n"
        "  assert(u == u:lower())\n"
        "  assert(not seen[u]) seen[u] = true\n"
        "end");
}

static void test_random_bytes(void **st) {
    unsigned char a[32], b[32];

    assert_int_equal(weir_crypto_random(a, sizeof a), 0);
    assert_int_equal(weir_crypto_random(b, sizeof b), 0);
    assert_memory_not_equal(a, b, sizeof a);
    assert_int_equal(weir_crypto_random(a, 0), 0);
    run_lua(*st,
        "assert(crypto.random_bytes(0) == '')\n"
        "assert(#crypto.random_bytes(16) == 16)\n"
        "assert(#crypto.random_bytes(1048576) == 1048576)\n"
        "assert(crypto.random_bytes(32) ~= crypto.random_bytes(32))\n"
        "local ok, err = pcall(crypto.random_bytes, 1048577)\n"
        "assert(not ok and err:find('1 MiB'), err)\n"
        "ok, err = pcall(crypto.random_bytes, -1)\n"
        "assert(not ok and err:find('bad argument #1'), err)\n"
        "assert(not pcall(crypto.random_bytes, 1.5))\n"
        "assert(not pcall(crypto.random_bytes))");
}

static void test_constant_time_eq(void **st) {
    run_lua(*st,
        "local eq = crypto.constant_time_eq\n"
        "assert(eq('', '') == true)\n"
        "assert(eq('secret', 'secret') == true)\n"
        "assert(eq('secret', 'secreT') == false)\n"
        "assert(eq('secret', 'Secret') == false)\n"
        "assert(eq('secret', 'secret2') == false)\n"
        "assert(eq('a\\0b', 'a\\0c') == false)\n"
        "assert(eq('a\\0b', 'a\\0b') == true)\n"
        "local mac = crypto.hmac_sha256('k', 'm')\n"
        "assert(eq(mac, crypto.hmac_sha256('k', 'm')))\n"
        "assert(not pcall(eq, 'a'))");
}

static void test_hex_helper(void **st) {
    char out[9];
    (void)st;

    weir_crypto_hex((const unsigned char *)"\xde\xad\xbe\xef", 4, out);
    assert_string_equal(out, "deadbeef");
    weir_crypto_hex((const unsigned char *)"", 0, out);
    assert_string_equal(out, "");
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, test_crypto_setup, test_crypto_teardown)
        T(test_sha256_fips_vectors),
        T(test_hmac_sha256_rfc4231),
        T(test_base64_rfc4648),
        T(test_base64_invalid_returns_nil),
        T(test_hex),
        T(test_uuid4),
        T(test_random_bytes),
        T(test_constant_time_eq),
        cmocka_unit_test(test_hex_helper),
#undef T
    };
    return cmocka_run_group_tests_name("weir.crypto", tests, NULL, NULL);
}
