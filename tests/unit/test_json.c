/*
 * test_json.c -- weir.json on a plain lua_State (no engine, no sandbox):
 * round trips, number mapping, escapes, null, error messages and paths,
 * depth limits, UTF-8, canonical output, and allocation failures at
 * every point of a decode / encode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "weir_json.h"

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static lua_State *test_json_state(void) {
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    luaL_openlibs(L);
    luaL_requiref(L, "weir.json", weir_open_json, 0);
    lua_setglobal(L, "json");
    return L;
}

static int test_json_setup(void **st) {
    *st = test_json_state();
    return 0;
}

static int test_json_teardown(void **st) {
    lua_close(*st);
    return 0;
}

/* Runs Lua code that checks itself with assert(); fails the test with the
 * error and a traceback if it raises. */
static void run_lua(lua_State *L, const char *code) {
    int top = lua_gettop(L);

    if (luaL_loadstring(L, code) != LUA_OK)
        fail_msg("syntax: %s", lua_tostring(L, -1));
    if (lua_pcall(L, 0, 0, 0) != LUA_OK)
        fail_msg("%s", lua_tostring(L, -1));
    lua_settop(L, top);
}

/* Runs code expected to raise; returns the message (valid until the next
 * call), or fails the test if it did not raise. */
static const char *lua_error_of(lua_State *L, const char *code) {
    static char msg[2048];

    lua_settop(L, 0);
    if (luaL_loadstring(L, code) != LUA_OK)
        fail_msg("syntax: %s", lua_tostring(L, -1));
    if (lua_pcall(L, 0, 0, 0) == LUA_OK)
        fail_msg("expected an error from: %s", code);
    snprintf(msg, sizeof msg, "%s", lua_tostring(L, -1));
    lua_settop(L, 0);
    return msg;
}

static void assert_contains(const char *haystack, const char *needle) {
    if (strstr(haystack, needle) == NULL)
        fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
}

/* Encodes the result of the Lua expression `expr` with flags and compares
 * the text. */
static void assert_encodes(lua_State *L, const char *expr, int flags,
                           const char *want) {
    char code[4096];

    snprintf(code, sizeof code, "return %s", expr);
    lua_settop(L, 0);
    if (luaL_dostring(L, code) != LUA_OK)
        fail_msg("%s", lua_tostring(L, -1));
    weir_json_encode(L, 1, flags);
    assert_string_equal(lua_tostring(L, -1), want);
    lua_settop(L, 0);
}

static int test_json_encode_canonical(lua_State *L) {
    weir_json_encode(L, 1, WEIR_JSON_CANONICAL);
    return 1;
}

/* decode(text) then encode(sort_keys) gives text back. */
static void assert_roundtrip(lua_State *L, const char *text) {
    lua_settop(L, 0);
    if (weir_json_decode(L, text, strlen(text)) != 0)
        fail_msg("decode %s: %s", text, lua_tostring(L, -1));
    weir_json_encode(L, 1, WEIR_JSON_SORT_KEYS);
    assert_string_equal(lua_tostring(L, -1), text);
    lua_settop(L, 0);
}

/* ------------------------------------------------------------------ */
/* round trips                                                         */

static void test_empty_containers_roundtrip(void **st) {
    lua_State *L = *st;

    assert_roundtrip(L, "[]");
    assert_roundtrip(L, "{}");
    assert_roundtrip(L, "[[],{},[[]],[{}]]");
    assert_roundtrip(L, "{\"a\":[],\"b\":{},\"c\":{\"d\":[[],{}]}}");
    /* Decoded arrays carry json.array_mt, objects nothing. */
    run_lua(L, "local a = json.decode('[]')\n"
               "assert(getmetatable(a) == json.array_mt)\n"
               "assert(next(a) == nil)\n"
               "local o = json.decode('{}')\n"
               "assert(getmetatable(o) == nil)\n"
               "assert(json.encode(o) == '{}')\n"
               "assert(json.encode(a) == '[]')");
}

static void test_table_classification(void **st) {
    lua_State *L = *st;

    assert_encodes(L, "{}", 0, "{}");
    assert_encodes(L, "json.array({})", 0, "[]");
    assert_encodes(L, "json.array()", 0, "[]");
    assert_encodes(L, "{1, 2, 3}", 0, "[1,2,3]");
    assert_encodes(L, "{'a', {true, false}}", 0, "[\"a\",[true,false]]");
    /* Integer keys that are not exactly 1..n: object, keys as strings. */
    assert_encodes(L, "{[1] = 1, [3] = 3}", WEIR_JSON_SORT_KEYS,
                   "{\"1\":1,\"3\":3}");
    assert_encodes(L, "{[0] = 'z'}", 0, "{\"0\":\"z\"}");
    assert_encodes(L, "{[-5] = 'm'}", 0, "{\"-5\":\"m\"}");
    assert_encodes(L, "{[2] = 'b'}", 0, "{\"2\":\"b\"}");
    assert_encodes(L, "{1, a = 2}", WEIR_JSON_SORT_KEYS,
                   "{\"1\":1,\"a\":2}");
    /* array_mt wins over the keys, and holes encode as null. */
    assert_encodes(L, "json.array({1, nil, 3})", 0, "[1,null,3]");
    run_lua(L, "local t = {}\n"
               "assert(json.array(t) == t)\n"
               "assert(getmetatable(t) == json.array_mt)\n"
               "local ok, err = pcall(json.array, setmetatable({}, {}))\n"
               "assert(not ok and err:find('already has a metatable'))");
}

static void test_integers(void **st) {
    lua_State *L = *st;

    assert_roundtrip(L, "[0,1,-1,9007199254740993,9223372036854775807,"
                        "-9223372036854775808]");
    run_lua(L, "local v = json.decode('9007199254740993')\n"
               "assert(math.type(v) == 'integer')\n"
               "assert(v == 9007199254740993)\n"
               "assert(json.decode('9223372036854775807') == math.maxinteger)\n"
               "assert(json.decode('-9223372036854775808') == math.mininteger)\n"
               "assert(math.type(json.decode('-9223372036854775808')) == 'integer')\n"
               /* one past int64: a float, not a wrapped integer */
               "local big = json.decode('9223372036854775808')\n"
               "assert(math.type(big) == 'float' and big == 2^63)\n"
               "assert(math.type(json.decode('-0')) == 'integer')\n"
               "assert(math.type(json.decode('1')) == 'integer')");
    assert_encodes(L, "math.maxinteger", 0, "9223372036854775807");
    assert_encodes(L, "math.mininteger", 0, "-9223372036854775808");
    assert_encodes(L, "9007199254740993", 0, "9007199254740993");
    assert_encodes(L, "-42", 0, "-42");
}

static void test_floats(void **st) {
    lua_State *L = *st;

    assert_encodes(L, "0.1", 0, "0.1");
    assert_encodes(L, "1.0", 0, "1.0");
    assert_encodes(L, "-2.0", 0, "-2.0");
    assert_encodes(L, "1e300", 0, "1e+300");
    assert_encodes(L, "-0.0", 0, "-0.0");
    assert_encodes(L, "2^63", 0, "9.2233720368547758e+18");
    assert_encodes(L, "123456789012345.0", 0, "123456789012345.0");
    /* Needs 17 digits to round-trip. */
    assert_encodes(L, "0.1 + 0.2", 0, "0.30000000000000004");
    run_lua(L, "local function same(x)\n"
               "  local y = json.decode(json.encode(x))\n"
               "  assert(math.type(y) == 'float', tostring(x))\n"
               "  assert(y == x, string.format('%.17g', x))\n"
               "end\n"
               "for _, x in ipairs{0.1, 1.0, 1e300, -1e-300, 1/3, 2/3, 0.1 + 0.2,\n"
               "                   5e-324, 1.7976931348623157e308, 2^53, 2^63,\n"
               "                   123.456, 1e22, 1e23, 3.14159, -7.0} do\n"
               "  same(x)\n"
               "end\n"
               "local z = json.decode(json.encode(-0.0))\n"
               "assert(1/z == -math.huge)\n"
               "assert(math.type(json.decode('1.5')) == 'float')\n"
               "assert(math.type(json.decode('1e3')) == 'float')\n"
               "assert(json.decode('1e3') == 1000)\n"
               "assert(math.type(json.decode('1E-2')) == 'float')");
}

static void test_strings_and_unicode(void **st) {
    lua_State *L = *st;

    run_lua(L, "assert(json.decode('\"\\\\u00e9\"') == '\\xc3\\xa9')\n"
               /* surrogate pair -> one 4-byte UTF-8 sequence */
               "assert(json.decode('\"\\\\ud83d\\\\ude00\"') == '\\xf0\\x9f\\x98\\x80')\n"
               "assert(json.decode('\"\\\\u0000\"') == '\\0')\n"
               "assert(json.decode('\"a\\\\\"b\\\\\\\\c\\\\/d\\\\n\"') == 'a\"b\\\\c/d\\n')\n"
               "assert(json.decode('\"\\xe2\\x82\\xac\"') == '\\xe2\\x82\\xac')");
    /* UTF-8 is written as is; quotes, backslashes and controls escaped. */
    assert_encodes(L, "'\\xc3\\xa9\\xf0\\x9f\\x98\\x80'", 0,
                   "\"\xc3\xa9\xf0\x9f\x98\x80\"");
    assert_encodes(L, "'a\"b\\\\c\\n\\t\\1'", 0,
                   "\"a\\\"b\\\\c\\n\\t\\u0001\"");
    assert_encodes(L, "'a/b'", 0, "\"a/b\"");
    assert_encodes(L, "'\\0'", 0, "\"\\u0000\"");
    run_lua(L, "local s = '\\0\\1\\31 \"\\\\\\xc3\\xa9\\xf0\\x9f\\x98\\x80~'\n"
               "assert(json.decode(json.encode(s)) == s)");
}

static void test_null(void **st) {
    lua_State *L = *st;

    run_lua(L, "local a = json.decode('[null,1,null]')\n"
               "assert(#a == 3)\n"
               "assert(a[1] == json.null and a[3] == json.null)\n"
               "assert(json.is_null(a[1]) and not json.is_null(a[2]))\n"
               "assert(not json.is_null(nil) and not json.is_null(false))\n"
               "assert(json.encode(a) == '[null,1,null]')\n"
               "local o = json.decode('{\"a\":null}')\n"
               "assert(o.a == json.null)\n"
               "assert(json.encode(o) == '{\"a\":null}')\n"
               "assert(json.decode('null') == json.null)\n"
               "assert(json.encode(json.null) == 'null')\n"
               "assert(json.encode(nil) == 'null')\n"
               "assert(type(json.null) == 'userdata')");
    lua_settop(L, 0);
    weir_json_push_null(L);
    assert_true(weir_json_is_null(L, -1));
    lua_pushnil(L);
    assert_false(weir_json_is_null(L, -1));
    lua_pushlightuserdata(L, L);
    assert_false(weir_json_is_null(L, -1));
    lua_settop(L, 0);
}

/* The sentinel is one address for the whole process; the array
 * metatable is one table per state, the same on every call. */
static void test_shared_sentinels(void **st) {
    lua_State *L = *st;
    lua_State *L2 = test_json_state();

    weir_json_push_null(L);
    weir_json_push_null(L2);
    assert_ptr_equal(lua_touserdata(L, -1), lua_touserdata(L2, -1));
    lua_getglobal(L2, "json");
    lua_getfield(L2, -1, "null");
    assert_true(lua_rawequal(L2, -1, -3));
    lua_close(L2);

    lua_settop(L, 0);
    weir_json_push_array_mt(L);
    weir_json_push_array_mt(L);
    assert_true(lua_istable(L, 1));
    assert_true(lua_rawequal(L, 1, 2));
    lua_settop(L, 0);
    run_lua(L, "local a = json.decode('[1]')\n"
               "assert(getmetatable(a) == json.array_mt)\n"
               "assert(getmetatable(json.decode('[[]]')[1]) == json.array_mt)");
}

/* Every decoded array of a state shares the metatable: no script may
 * give it an __index (or anything else) behind the others' backs. */
static void test_array_mt_read_only(void **st) {
    lua_State *L = *st;
    const char *msg;

    msg = lua_error_of(L, "getmetatable(json.decode('[]')).__index = "
                          "function() return 'PWNED' end");
    assert_contains(msg, "attempt to modify read-only table json.array_mt "
                         "(field '__index')");
    msg = lua_error_of(L, "json.array_mt.x = 1");
    assert_contains(msg, "read-only");
    msg = lua_error_of(L, "setmetatable(json.array_mt, nil)");
    assert_contains(msg, "protected metatable");
    run_lua(L, "assert(getmetatable(json.array_mt) == false)\n"
               "assert(next(json.array_mt) == nil)\n"
               "assert(json.decode('[1]').x == nil)\n"
               /* arrays can still be given another metatable */
               "local a = setmetatable(json.decode('[1]'), {})\n"
               "assert(json.encode(a) == '[1]')");
}

static void test_decode_varying_shapes(void **st) {
    /* The decoder sizes tables from the previous document's shape; a
     * different shape must still decode exactly. */
    run_lua(*st,
            "local small = '{\"a\":1}'\n"
            "local big = '{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":[1,2,3,4,5,6,7,8,9]}'\n"
            "for i = 1, 3 do\n"
            "  local s, n = json.decode(small), 0\n"
            "  for _ in pairs(s) do n = n + 1 end\n"
            "  assert(s.a == 1 and n == 1)\n"
            "  local b = json.decode(big)\n"
            "  assert(b.e == 5 and #b.f == 9 and b.f[9] == 9)\n"
            "  assert(json.encode(json.decode(small)) == small)\n"
            "  local a = json.decode('[[1],[1,2,3,4,5],[]]')\n"
            "  assert(#a[1] == 1 and #a[2] == 5 and #a[3] == 0)\n"
            "end");
}

/* ------------------------------------------------------------------ */
/* errors                                                              */

static void test_decode_errors_name_position(void **st) {
    lua_State *L = *st;
    const char *doc = "{\"a\": 1,\n \"b\": 2,\n \"c\" 3}";
    const char *msg;

    lua_settop(L, 0);
    assert_int_equal(weir_json_decode(L, doc, strlen(doc)), -1);
    msg = lua_tostring(L, -1);
    assert_non_null(msg);
    assert_contains(msg, "parse error at line 3, column ");
    assert_contains(msg, "(byte ");
    assert_contains(msg, "must be separated by a colon");
    lua_settop(L, 0);

    msg = lua_error_of(L, "json.decode('{\"a\":1, 3}')");
    assert_contains(msg, "json.decode: parse error at line 1, column 10 "
                         "(byte 9): invalid object key");
    msg = lua_error_of(L, "json.decode('[1,2')");
    assert_contains(msg, "line 1, column 5 (byte 4): premature EOF");
    msg = lua_error_of(L, "json.decode('')");
    assert_contains(msg, "(byte 0): premature EOF");
    msg = lua_error_of(L, "json.decode('[1] x')");
    assert_contains(msg, "trailing garbage");
    msg = lua_error_of(L, "json.decode('{} {}')");
    assert_contains(msg, "trailing garbage");
    msg = lua_error_of(L, "json.decode('[1,]')");
    assert_contains(msg, "json.decode: parse error at line 1");
    msg = lua_error_of(L, "json.decode('{\"a\":tru}')");
    assert_contains(msg, "json.decode: parse error");
    msg = lua_error_of(L, "json.decode('// c\\n1')");
    assert_contains(msg, "json.decode: parse error");
    msg = lua_error_of(L, "json.decode('\\n\\n  @')");
    assert_contains(msg, "line 3, column 4 (byte 5)");
    /* The script position comes first, as for any Lua error. */
    msg = lua_error_of(L, "local x = json.decode('[')");
    assert_contains(msg, "]:1: json.decode: parse error");
}

static void test_decode_invalid_utf8(void **st) {
    lua_State *L = *st;
    const char *msg;
    /* yajl checks the structure of UTF-8 (lead and continuation bytes);
     * it does not reject overlong forms or encoded surrogates. */
    static const char *const bad[] = {
        "\"\xff\"", "\"\xe2\x82\"", "[\"ok\",\"\x80\"]", "{\"\xfe\":1}",
        "\"\xc3\"", "\"a\xf0\x9f\x98\"",
    };
    size_t i;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lua_settop(L, 0);
        assert_int_equal(weir_json_decode(L, bad[i], strlen(bad[i])), -1);
        assert_contains(lua_tostring(L, -1), "UTF8");
    }
    lua_settop(L, 0);
    msg = lua_error_of(L, "json.decode('\"\\xff\"')");
    assert_contains(msg, "json.decode: parse error at line 1");
}

static void test_encode_errors_name_path(void **st) {
    lua_State *L = *st;
    const char *msg;

    msg = lua_error_of(L, "json.encode({a = {1, {[true] = 1}}})");
    assert_contains(msg, "json.encode: cannot encode boolean key at $.a[2]");
    msg = lua_error_of(L, "json.encode({x = {[1.5] = 1}})");
    assert_contains(msg, "cannot encode float key at $.x");
    msg = lua_error_of(L, "json.encode({x = {[{}] = 1}})");
    assert_contains(msg, "cannot encode table key at $.x");
    msg = lua_error_of(L, "json.encode({f = print})");
    assert_contains(msg, "cannot encode function at $.f");
    msg = lua_error_of(L, "json.encode({list = {1, 2, coroutine.create(print)}})");
    assert_contains(msg, "cannot encode thread at $.list[3]");
    msg = lua_error_of(L, "json.encode(io.stdout)");
    assert_contains(msg, "cannot encode userdata at $");
    msg = lua_error_of(L, "json.encode({['a b'] = {c = 0/0}})");
    assert_contains(msg, "cannot encode NaN at $[\"a b\"].c");
    msg = lua_error_of(L, "json.encode({v = math.huge})");
    assert_contains(msg, "cannot encode inf at $.v");
    msg = lua_error_of(L, "json.encode({v = -math.huge})");
    assert_contains(msg, "cannot encode -inf at $.v");
    msg = lua_error_of(L, "json.encode({[7] = {s = '\\xff'}})");
    assert_contains(msg, "invalid UTF-8 in string at $[7].s");
    msg = lua_error_of(L, "json.encode({{['\\xc0'] = 1}})");
    assert_contains(msg, "invalid UTF-8 in key at $[1][\"\\xc0\"]");
    msg = lua_error_of(L, "local t = {} t.self = t json.encode({a = t})");
    assert_contains(msg, "table cycle");
    assert_contains(msg, "at $.a.self");
    msg = lua_error_of(L, "json.encode({[1] = 'a', ['1'] = 'b'})");
    assert_contains(msg, "duplicate key");
    msg = lua_error_of(L, "json.encode({[1] = 'a', ['1'] = 'b'}, "
                          "{sort_keys = true})");
    assert_contains(msg, "duplicate key");
    msg = lua_error_of(L, "json.encode({}, {sortkeys = true})");
    assert_contains(msg, "unknown option 'sortkeys'");
    msg = lua_error_of(L, "json.encode()");
    assert_contains(msg, "bad argument #1");
    /* Errors carry the script position like any other. */
    msg = lua_error_of(L, "local x = json.encode(print)");
    assert_contains(msg, "]:1: json.encode: cannot encode function at $");
    /* A shared (non-cyclic) table is fine twice. */
    run_lua(L, "local s = {1} assert(json.encode({s, s}) == '[[1],[1]]')");
}

static void test_depth_limits(void **st) {
    lua_State *L = *st;
    const char *msg;

    run_lua(L, "local ok = string.rep('[', 1000) .. string.rep(']', 1000)\n"
               "local v = json.decode(ok)\n"
               "assert(json.encode(v) == ok)\n"
               "local okobj = string.rep('{\"k\":', 999) .. '[]' .. string.rep('}', 999)\n"
               "assert(json.encode(json.decode(okobj)) == okobj)");
    msg = lua_error_of(L, "json.decode(string.rep('[', 1001) .. string.rep(']', 1001))");
    assert_contains(msg, "nesting deeper than 1000 levels");
    assert_contains(msg, "column 1002 (byte 1001)");
    msg = lua_error_of(L, "json.decode(string.rep('{\"a\":', 1001) .. '1' .. "
                          "string.rep('}', 1001))");
    assert_contains(msg, "nesting deeper than 1000 levels");
    msg = lua_error_of(L, "local t = {} local c = t\n"
                          "for i = 1, 1000 do c[1] = {} c = c[1] end\n"
                          "json.encode(t)");
    assert_contains(msg, "json.encode: nesting deeper than 1000 levels at "
                         "$[1][1]");
    assert_contains(msg, "...");
    /* Exactly 1000 levels encodes. */
    run_lua(L, "local t = {} local c = t\n"
               "for i = 1, 999 do c[1] = {} c = c[1] end\n"
               "assert(#json.encode(t) == 2000)");
}

/* ------------------------------------------------------------------ */
/* canonical and pretty output                                         */

static void test_sort_keys(void **st) {
    lua_State *L = *st;

    /* Bytewise order: upper case before lower case, prefixes first,
     * multi-byte UTF-8 last; integer keys sort as their decimal text. */
    assert_encodes(L, "{b = 1, a = 2, B = 3, ab = 4, ['\\xc3\\xa9'] = 5, "
                      "_ = 6, ['a b'] = 7}",
                   WEIR_JSON_SORT_KEYS,
                   "{\"B\":3,\"_\":6,\"a\":2,\"a b\":7,\"ab\":4,\"b\":1,"
                   "\"\xc3\xa9\":5}");
    assert_encodes(L, "{[10] = 'x', [9] = 'y', [100] = 'z'}",
                   WEIR_JSON_SORT_KEYS,
                   "{\"10\":\"x\",\"100\":\"z\",\"9\":\"y\"}");
    assert_encodes(L, "{z = {y = {x = 1, w = 2}, v = json.array{3, 2}}, a = {}}",
                   WEIR_JSON_SORT_KEYS,
                   "{\"a\":{},\"z\":{\"v\":[3,2],\"y\":{\"w\":2,\"x\":1}}}");
    /* Canonical: two tables built in different orders encode the same. */
    run_lua(L, "local a, b = {}, {}\n"
               "for i = 1, 200 do a['k' .. i] = i end\n"
               "for i = 200, 1, -1 do b['k' .. i] = i end\n"
               "local o = {sort_keys = true}\n"
               "assert(json.encode(a, o) == json.encode(b, o))\n"
               "local s = json.encode(a, o)\n"
               "assert(s:find('\"k1\":1,\"k10\":10,\"k100\":100,\"k101\"', 1, true))");
}

/* WEIR_JSON_CANONICAL (hashing): integral floats that fit an integer are
 * written as integers, so 1.0 and 1 give the same text; other floats are
 * unchanged. */
static void test_canonical_floats(void **st) {
    lua_State *L = *st;
    int f = WEIR_JSON_SORT_KEYS | WEIR_JSON_CANONICAL;

    assert_encodes(L, "{b = 1.0, a = {2.0, -0.0, 3}}", f,
                   "{\"a\":[2,0,3],\"b\":1}");
    assert_encodes(L, "{0.5, 1e300, 2^63, -2^63}", f,
                   "[0.5,1e+300,9.2233720368547758e+18,-9223372036854775808]");
    assert_encodes(L, "1.0", 0, "1.0");
    assert_encodes(L, "7.0", WEIR_JSON_CANONICAL, "7");
    lua_settop(L, 0);
    lua_pushnumber(L, 0.0 / 0.0);
    lua_pushcfunction(L, test_json_encode_canonical);
    lua_insert(L, 1);
    assert_int_not_equal(lua_pcall(L, 1, 1, 0), LUA_OK);
    assert_contains(lua_tostring(L, -1), "cannot encode NaN at $");
    lua_settop(L, 0);
}

static void test_pretty(void **st) {
    lua_State *L = *st;

    assert_encodes(L, "{a = 1, b = {true, {}}, c = {}, d = json.array()}",
                   WEIR_JSON_SORT_KEYS | WEIR_JSON_PRETTY,
                   "{\n"
                   "  \"a\": 1,\n"
                   "  \"b\": [\n"
                   "    true,\n"
                   "    {}\n"
                   "  ],\n"
                   "  \"c\": {},\n"
                   "  \"d\": []\n"
                   "}");
    assert_encodes(L, "{}", WEIR_JSON_PRETTY, "{}");
    assert_encodes(L, "'x'", WEIR_JSON_PRETTY, "\"x\"");
    run_lua(L, "local v = {list = {1, 2.5, 'x'}, nested = {k = json.null}}\n"
               "local p = json.encode(v, {pretty = true, sort_keys = true})\n"
               "assert(p:find('\\n  \"list\": [\\n    1,', 1, true))\n"
               "assert(json.encode(json.decode(p), {sort_keys = true}) ==\n"
               "       json.encode(v, {sort_keys = true}))");
}

static void test_large_output(void **st) {
    /* Grows past the inline buffer many times over. */
    run_lua(*st, "local t = {}\n"
                 "for i = 1, 20000 do t[i] = {id = i, name = 'n' .. i .. '\\xc3\\xa9'} end\n"
                 "local o = {sort_keys = true}\n"
                 "local s = json.encode(t, o)\n"
                 "local back = json.decode(s)\n"
                 "assert(#back == 20000 and back[20000].id == 20000)\n"
                 "assert(back[123].name == 'n123\\xc3\\xa9')\n"
                 "assert(json.encode(back, o) == s)\n"
                 "local long = string.rep('\\xe2\\x82\\xac', 100000)\n"
                 "assert(json.decode(json.encode({long}))[1] == long)");
}

/* ------------------------------------------------------------------ */
/* allocation failures                                                 */

/* An allocator that fails once `budget` allocations have been made (when
 * armed).  Under ASan / valgrind this shows that nothing leaks when Lua
 * raises "not enough memory" in the middle of a decode or encode. */
typedef struct test_json_alloc {
    int armed;
    long budget;
    long failures;
} test_json_alloc;

static void *test_json_alloc_fn(void *ud, void *ptr, size_t osize,
                                size_t nsize) {
    test_json_alloc *a = ud;
    (void)osize;

    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (a->armed && nsize > osize) {
        if (a->budget <= 0) {
            a->failures++;
            return NULL;
        }
        a->budget--;
    }
    return realloc(ptr, nsize);
}

static int test_json_decode_encode(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);

    if (weir_json_decode(L, s, len) != 0)
        return lua_error(L);
    weir_json_encode(L, -1, (int)lua_tointeger(L, 2));
    return 1;
}

static void test_alloc_failure_everywhere(void **st) {
    static const char doc[] =
        "{\"users\":[{\"id\":1,\"name\":\"\\u00e9l\\u00e8ve\",\"tags\":[\"a\","
        "\"b\"],\"score\":1.5,\"none\":null},{\"id\":2,\"name\":\"bob\","
        "\"tags\":[],\"meta\":{\"k\":{\"deep\":[1,[2,[3]]]}}}],"
        "\"count\":2,\"long\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}";
    long budget;
    int flags, ok_seen = 0;
    (void)st;

    for (flags = 0; flags <= WEIR_JSON_SORT_KEYS; flags += WEIR_JSON_SORT_KEYS) {
        for (budget = 0; budget < 2000; budget++) {
            test_json_alloc a = {0, 0, 0};
            lua_State *L = lua_newstate(test_json_alloc_fn, &a);
            int status;

            assert_non_null(L);
            lua_pushcfunction(L, test_json_decode_encode);
            lua_pushlstring(L, doc, sizeof doc - 1);
            lua_pushinteger(L, flags);
            a.budget = budget;
            a.armed = 1;
            status = lua_pcall(L, 2, 1, 0);
            a.armed = 0;
            if (status == LUA_OK) {
                /* Enough memory: the result must be complete. */
                assert_true(lua_isstring(L, -1));
                assert_non_null(strstr(lua_tostring(L, -1), "\"deep\":[1,[2,[3]]]"));
                ok_seen = 1;
                lua_close(L);
                break;
            }
            /* Out of memory surfaces as an error, never a crash. */
            assert_true(a.failures > 0);
            lua_close(L);
        }
        assert_true(ok_seen);
        ok_seen = 0;
    }
}

/* A parse error needs memory too (the message): failing there must not
 * leak the yajl handle either. */
static void test_alloc_failure_in_parse_error(void **st) {
    static const char bad[] = "{\"a\": [1, 2, {\"b\": \"\\u00e9\"}],\n \"c\" 3}";
    long budget;
    (void)st;

    for (budget = 0; budget < 2000; budget++) {
        test_json_alloc a = {0, 0, 0};
        lua_State *L = lua_newstate(test_json_alloc_fn, &a);
        int status;

        assert_non_null(L);
        lua_pushcfunction(L, test_json_decode_encode);
        lua_pushlstring(L, bad, sizeof bad - 1);
        lua_pushinteger(L, 0);
        a.budget = budget;
        a.armed = 1;
        status = lua_pcall(L, 2, 1, 0);
        a.armed = 0;
        assert_int_not_equal(status, LUA_OK);
        if (a.failures == 0) {
            assert_contains(lua_tostring(L, -1), "parse error at line 2");
            lua_close(L);
            return;
        }
        lua_close(L);
    }
    fail_msg("never got the parse error");
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, test_json_setup, test_json_teardown)
        T(test_empty_containers_roundtrip),
        T(test_table_classification),
        T(test_integers),
        T(test_floats),
        T(test_strings_and_unicode),
        T(test_null),
        T(test_shared_sentinels),
        T(test_array_mt_read_only),
        T(test_decode_varying_shapes),
        T(test_decode_errors_name_position),
        T(test_decode_invalid_utf8),
        T(test_encode_errors_name_path),
        T(test_depth_limits),
        T(test_sort_keys),
        T(test_canonical_floats),
        T(test_pretty),
        T(test_large_output),
        cmocka_unit_test(test_alloc_failure_everywhere),
        cmocka_unit_test(test_alloc_failure_in_parse_error),
#undef T
    };
    return cmocka_run_group_tests_name("weir.json", tests, NULL, NULL);
}
