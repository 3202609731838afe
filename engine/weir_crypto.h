/*
 * weir_crypto.h -- hashing, MACs, encodings, random values (OpenSSL).
 */
#ifndef WEIR_CRYPTO_H
#define WEIR_CRYPTO_H

#include <lua.h>
#include <stddef.h>

/* Lua module "weir.crypto". */
int weir_open_crypto(lua_State *L);

/* Fills buf with n cryptographically strong random bytes; 0 or -1. */
int weir_crypto_random(void *buf, size_t n);
/* Writes a UUID v4 as 36 chars + NUL into out[37]; 0 or -1. */
int weir_crypto_uuid4(char out[37]);
/* Lower-case hex of n bytes into out[2n+1]. */
void weir_crypto_hex(const unsigned char *in, size_t n, char *out);

#endif
