/*
 * weir_crypto.c -- the "weir.crypto" module: SHA-256, HMAC-SHA-256,
 * base64 / base64url / hex, random bytes, UUID v4 and constant-time
 * comparison, all on OpenSSL (EVP, HMAC, RAND, CRYPTO_memcmp).
 *
 * Conventions: wrong argument types raise (they are bugs in the script);
 * malformed input to a decoder returns nil plus a message (it is data,
 * usually from the outside world, and callers want to branch on it).
 */
#include "weir_crypto.h"

#include <lauxlib.h>
#include <lua.h>
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define WEIR_CRYPTO_MAX_RANDOM ((lua_Integer)1 << 20)  /* 1 MiB */

/* ---------------------------------------------------------------------
 * C helpers
 * ------------------------------------------------------------------- */

int weir_crypto_random(void *buf, size_t n) {
    unsigned char *p = buf;

    /* RAND_bytes takes an int. */
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        if (RAND_bytes(p, chunk) != 1)
            return -1;
        p += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

void weir_crypto_hex(const unsigned char *in, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

int weir_crypto_uuid4(char out[37]) {
    unsigned char b[16];
    char hex[33];

    if (weir_crypto_random(b, sizeof b) != 0)
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);   /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);   /* RFC 4122 variant */
    weir_crypto_hex(b, sizeof b, hex);
    memcpy(out, hex, 8);
    out[8] = '-';
    memcpy(out + 9, hex + 8, 4);
    out[13] = '-';
    memcpy(out + 14, hex + 12, 4);
    out[18] = '-';
    memcpy(out + 19, hex + 16, 4);
    out[23] = '-';
    memcpy(out + 24, hex + 20, 12);
    out[36] = '\0';
    return 0;
}

/* ---------------------------------------------------------------------
 * Hashes and MACs
 * ------------------------------------------------------------------- */

static void weir_crypto_push_digest(lua_State *L, const unsigned char *md,
                                    size_t n, int as_hex) {
    if (as_hex) {
        char hex[2 * EVP_MAX_MD_SIZE + 1];
        weir_crypto_hex(md, n, hex);
        lua_pushlstring(L, hex, 2 * n);
    } else {
        lua_pushlstring(L, (const char *)md, n);
    }
}

static int weir_crypto_sha256_common(lua_State *L, int as_hex) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (EVP_Digest(s, len, md, &mdlen, EVP_sha256(), NULL) != 1)
        return luaL_error(L, "crypto.sha256: OpenSSL digest failed");
    weir_crypto_push_digest(L, md, mdlen, as_hex);
    return 1;
}

/* crypto.sha256(s) -> 32 raw bytes */
static int weir_crypto_l_sha256(lua_State *L) {
    return weir_crypto_sha256_common(L, 0);
}

/* crypto.sha256_hex(s) -> 64 hex digits */
static int weir_crypto_l_sha256_hex(lua_State *L) {
    return weir_crypto_sha256_common(L, 1);
}

static int weir_crypto_hmac_common(lua_State *L, int as_hex) {
    size_t klen, mlen;
    const char *key = luaL_checklstring(L, 1, &klen);
    const char *msg = luaL_checklstring(L, 2, &mlen);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (klen > INT_MAX)
        return luaL_argerror(L, 1, "key too long");
    if (HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, mlen,
             md, &mdlen) == NULL)
        return luaL_error(L, "crypto.hmac_sha256: OpenSSL HMAC failed");
    weir_crypto_push_digest(L, md, mdlen, as_hex);
    return 1;
}

/* crypto.hmac_sha256(key, msg) -> 32 raw bytes */
static int weir_crypto_l_hmac_sha256(lua_State *L) {
    return weir_crypto_hmac_common(L, 0);
}

/* crypto.hmac_sha256_hex(key, msg) -> 64 hex digits */
static int weir_crypto_l_hmac_sha256_hex(lua_State *L) {
    return weir_crypto_hmac_common(L, 1);
}

/* ---------------------------------------------------------------------
 * base64 / base64url
 * ------------------------------------------------------------------- */

/* Scratch memory that is freed even when a Lua error unwinds: a userdata
 * left on the stack. */
static unsigned char *weir_crypto_scratch(lua_State *L, size_t n) {
    return lua_newuserdatauv(L, n ? n : 1, 0);
}

static void weir_crypto_to_url(unsigned char *s, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        if (s[i] == '+')
            s[i] = '-';
        else if (s[i] == '/')
            s[i] = '_';
    }
}

/* Pushes the base64 (padded) or base64url (unpadded) text of s. */
static void weir_crypto_push_b64(lua_State *L, const char *s, size_t len,
                                 int url) {
    size_t cap, n;
    unsigned char *out;

    if (len > (size_t)INT_MAX / 4 * 3)
        luaL_error(L, "crypto.%s: input too large",
                   url ? "base64url_encode" : "base64_encode");
    cap = 4 * ((len + 2) / 3) + 1;
    out = weir_crypto_scratch(L, cap);
    n = (size_t)EVP_EncodeBlock(out, (const unsigned char *)s, (int)len);
    if (url) {
        while (n > 0 && out[n - 1] == '=')
            n--;
        weir_crypto_to_url(out, n);
    }
    lua_pushlstring(L, (const char *)out, n);
    lua_remove(L, -2);
}

/* Decodes base64 or base64url text, padding optional.  Pushes the bytes,
 * or nil and a message.
 *
 * EVP_DecodeBlock wants padded input, ignores surrounding whitespace and
 * does not report the length of the padding, so: strip the padding,
 * check the length, re-pad, decode, subtract the padding, and finally
 * require that encoding the result gives back the input.  That last
 * check rejects everything non-canonical (stray whitespace, characters
 * from the other alphabet, non-zero trailing bits) without a table of
 * our own. */
static int weir_crypto_b64_decode(lua_State *L, int url) {
    const char *fn = url ? "crypto.base64url_decode" : "crypto.base64_decode";
    size_t len, body, padded, i, npad = 0;
    const char *s = luaL_checklstring(L, 1, &len);
    unsigned char *in, *out;
    int n;

    lua_settop(L, 1);
    while (npad < 2 && npad < len && s[len - 1 - npad] == '=')
        npad++;
    body = len - npad;
    if ((npad > 0 && len % 4 != 0) || body % 4 == 1) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: invalid length %I", fn, (lua_Integer)len);
        return 2;
    }
    if (body > (size_t)INT_MAX / 2) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: input too large", fn);
        return 2;
    }
    padded = (body + 3) / 4 * 4;
    in = weir_crypto_scratch(L, padded + 1);    /* + EncodeBlock's NUL */
    memcpy(in, s, body);
    for (i = 0; i < body; i++) {
        if (url && (in[i] == '+' || in[i] == '/'))
            in[i] = '*';        /* not in the url alphabet: make it fail */
        else if (url && in[i] == '-')
            in[i] = '+';
        else if (url && in[i] == '_')
            in[i] = '/';
    }
    memset(in + body, '=', padded - body);
    out = weir_crypto_scratch(L, padded / 4 * 3);
    n = padded ? EVP_DecodeBlock(out, in, (int)padded) : 0;
    /* Any other count means DecodeBlock trimmed whitespace. */
    if (n >= 0 && (size_t)n == padded / 4 * 3) {
        size_t outlen = (size_t)n - (padded - body);
        /* Canonical check: re-encode into `in` (large enough). */
        int m = EVP_EncodeBlock(in, out, (int)outlen);
        if (url)
            weir_crypto_to_url(in, (size_t)m);
        if ((size_t)m == padded && memcmp(in, s, body) == 0) {
            lua_pushlstring(L, (const char *)out, outlen);
            return 1;
        }
    }
    lua_pushnil(L);
    lua_pushfstring(L, "%s: invalid %s input", fn, url ? "base64url" :
                                                          "base64");
    return 2;
}

/* crypto.base64_encode(s) -> padded base64 */
static int weir_crypto_l_base64_encode(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    weir_crypto_push_b64(L, s, len, 0);
    return 1;
}

/* crypto.base64_decode(s) -> bytes | nil, message */
static int weir_crypto_l_base64_decode(lua_State *L) {
    return weir_crypto_b64_decode(L, 0);
}

/* crypto.base64url_encode(s) -> base64url without padding */
static int weir_crypto_l_base64url_encode(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    weir_crypto_push_b64(L, s, len, 1);
    return 1;
}

/* crypto.base64url_decode(s) -> bytes | nil, message */
static int weir_crypto_l_base64url_decode(lua_State *L) {
    return weir_crypto_b64_decode(L, 1);
}

/* ---------------------------------------------------------------------
 * hex
 * ------------------------------------------------------------------- */

/* crypto.hex_encode(s) -> lower-case hex */
static int weir_crypto_l_hex_encode(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    char *out;

    if (len > ((size_t)-1 - 1) / 2)
        return luaL_error(L, "crypto.hex_encode: input too large");
    out = (char *)weir_crypto_scratch(L, 2 * len + 1);
    weir_crypto_hex((const unsigned char *)s, len, out);
    lua_pushlstring(L, out, 2 * len);
    return 1;
}

/* crypto.hex_decode(s) -> bytes | nil, message (either case accepted) */
static int weir_crypto_l_hex_decode(lua_State *L) {
    size_t len, i;
    const char *s = luaL_checklstring(L, 1, &len);
    unsigned char *out;

    if (len % 2 != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "crypto.hex_decode: odd length %I",
                        (lua_Integer)len);
        return 2;
    }
    out = weir_crypto_scratch(L, len / 2);
    for (i = 0; i < len; i += 2) {
        int hi = OPENSSL_hexchar2int((unsigned char)s[i]);
        int lo = OPENSSL_hexchar2int((unsigned char)s[i + 1]);
        if (hi < 0 || lo < 0) {
            lua_pushnil(L);
            lua_pushfstring(L, "crypto.hex_decode: invalid hex digit at "
                            "byte %I", (lua_Integer)(hi < 0 ? i + 1 : i + 2));
            return 2;
        }
        out[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    lua_pushlstring(L, (const char *)out, len / 2);
    return 1;
}

/* ---------------------------------------------------------------------
 * Random values, comparison
 * ------------------------------------------------------------------- */

/* crypto.random_bytes(n) -> n random bytes (0 <= n <= 1 MiB) */
static int weir_crypto_l_random_bytes(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    unsigned char *buf;

    luaL_argcheck(L, n >= 0 && n <= WEIR_CRYPTO_MAX_RANDOM, 1,
                  "must be between 0 and 1048576 (1 MiB)");
    buf = weir_crypto_scratch(L, (size_t)n);
    if (weir_crypto_random(buf, (size_t)n) != 0)
        return luaL_error(L, "crypto.random_bytes: OpenSSL RAND_bytes "
                          "failed");
    lua_pushlstring(L, (const char *)buf, (size_t)n);
    return 1;
}

/* crypto.uuid4() -> "xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx" */
static int weir_crypto_l_uuid4(lua_State *L) {
    char out[37];

    if (weir_crypto_uuid4(out) != 0)
        return luaL_error(L, "crypto.uuid4: OpenSSL RAND_bytes failed");
    lua_pushlstring(L, out, 36);
    return 1;
}

/* crypto.constant_time_eq(a, b) -> boolean.  The time depends on the
 * length only (which is not treated as secret), never on where the
 * strings differ. */
static int weir_crypto_l_constant_time_eq(lua_State *L) {
    size_t alen, blen;
    const char *a = luaL_checklstring(L, 1, &alen);
    const char *b = luaL_checklstring(L, 2, &blen);

    lua_pushboolean(L, alen == blen && CRYPTO_memcmp(a, b, alen) == 0);
    return 1;
}

static const luaL_Reg weir_crypto_funcs[] = {
    {"sha256", weir_crypto_l_sha256},
    {"sha256_hex", weir_crypto_l_sha256_hex},
    {"hmac_sha256", weir_crypto_l_hmac_sha256},
    {"hmac_sha256_hex", weir_crypto_l_hmac_sha256_hex},
    {"base64_encode", weir_crypto_l_base64_encode},
    {"base64_decode", weir_crypto_l_base64_decode},
    {"base64url_encode", weir_crypto_l_base64url_encode},
    {"base64url_decode", weir_crypto_l_base64url_decode},
    {"hex_encode", weir_crypto_l_hex_encode},
    {"hex_decode", weir_crypto_l_hex_decode},
    {"random_bytes", weir_crypto_l_random_bytes},
    {"uuid4", weir_crypto_l_uuid4},
    {"constant_time_eq", weir_crypto_l_constant_time_eq},
    {NULL, NULL}
};

int weir_open_crypto(lua_State *L) {
    luaL_newlib(L, weir_crypto_funcs);
    return 1;
}
