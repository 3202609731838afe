/*
 * weir_json.h -- JSON for scripts and for the engine, on yajl's
 * streaming parser and generator (Debian's libyajl).
 *
 * Mapping: objects <-> tables; arrays <-> tables carrying the shared
 * json.array_mt metatable (so [] stays [] through decode -> encode);
 * null <-> json.null (a light userdata sentinel); integers that fit in
 * 64 bits <-> Lua integers; other numbers <-> floats.
 */
#ifndef WEIR_JSON_H
#define WEIR_JSON_H

#include <lua.h>
#include <stddef.h>

#define WEIR_JSON_SORT_KEYS 0x1   /* canonical: object keys sorted */
#define WEIR_JSON_PRETTY    0x2
#define WEIR_JSON_CANONICAL 0x4   /* integral floats that fit lua_Integer
                                   * written as integers (hashing) */

/* Lua module "weir.json". */
int weir_open_json(lua_State *L);

/* Encodes the value at idx and pushes the string.  Raises a Lua error
 * naming the path ($.a[3].b) of the value that cannot be encoded. */
void weir_json_encode(lua_State *L, int idx, int flags);

/* Decodes s and pushes the value; returns 0.  On malformed input pushes
 * an error message naming line, column and byte offset and returns -1
 * (does not raise, except on out-of-memory). */
int weir_json_decode(lua_State *L, const char *s, size_t len);

void weir_json_push_null(lua_State *L);
int weir_json_is_null(lua_State *L, int idx);
/* Pushes the shared array metatable. */
void weir_json_push_array_mt(lua_State *L);

#endif
