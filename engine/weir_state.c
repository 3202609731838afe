/*
 * weir_state.c -- the sandboxed Lua state.
 *
 * Layout of a state's globals (why: Redis and LuaSandbox history, see
 * docs/architecture.md):
 *
 *   chunk env  --__index-->  base (allow-listed globals, unreachable)
 *                              string, table, math, ... = read-only proxies
 *
 * Each chunk gets its own env table, so a global set by one script is
 * invisible to the next.  The env's metatable is locked (__metatable),
 * so `setmetatable(_ENV, nil)` fails and `getmetatable(_ENV)` hides the
 * base.  Library tables reachable from scripts are proxies whose
 * __newindex raises; rawset refuses them; the string metatable is
 * locked.  The registry's globals slot holds a proxy too, so any path
 * that falls back to "the global table" sees a read-only view.
 */
#include "weir_state.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "weir_job.h"

static char weir_state_env_mt_key;     /* registry: metatable of chunk envs */
static char weir_state_base_key;       /* registry: the base table */
static char weir_state_frozen_key;     /* registry: weak set of proxies */
static char weir_state_loaded_key;     /* registry: require cache */
static char weir_state_loading;        /* sentinel: module being loaded */
static char weir_state_user_locked_key;/* registry: weak set of tables the
                                          script locked with __metatable */

#define WEIR_PATTERN_MAX_STEPS 1e9
#define WEIR_OS_DATE_MAX_FORMAT 256
#define WEIR_MODULE_NAME_MAX 200
#define WEIR_STRING_REP_MAX ((lua_Integer)1 << 31)
#define WEIR_TABLE_MOVE_MAX ((lua_Unsigned)1 << 26)

/* ---- allocator: counts bytes, refuses to grow past the cap ---- */

static void *weir_state_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    weir_state *st = ud;
    size_t old = ptr ? osize : 0;
    void *p;
    if (nsize == 0) {
        free(ptr);
        st->mem_used -= old;
        return NULL;
    }
    /* Lua assumes shrinking never fails: only growth is checked. */
    if (st->mem_limit && nsize > old && st->mem_used - old + nsize > st->mem_limit)
        return NULL;
    p = realloc(ptr, nsize);
    if (!p) return NULL;
    st->mem_used = st->mem_used - old + nsize;
    if (st->mem_used > st->mem_peak) st->mem_peak = st->mem_used;
    return p;
}

static int weir_state_panic(lua_State *L) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "weir: unprotected Lua error (engine bug): %s\n",
            msg ? msg : "(error object is not a string)");
    abort();
    return 0;
}

/* ---- CPU cap ---- */

void weir_state_cpu_hook(lua_State *L, lua_Debug *ar) {
    weir_state *st = weir_state_of(L);
    weir_job *job = st->running;
    char msg[512];
    lua_Debug where;
    (void)ar;
    if (!st->slice_killed && !(job && job->killed)) {
        uint64_t now;
        if (!st->cpu_limit_ns) return;
        now = uv_hrtime();
        if (now - st->slice_start_ns <= st->cpu_limit_ns) return;
        st->slice_killed = 1;
    }
    /* From now on raise at every instruction so no pcall in the script
     * (nor its message handler) can keep it alive. */
    lua_sethook(L, weir_state_cpu_hook, LUA_MASKCOUNT, 1);
    if (job && job->kill_reason) {
        lua_pushstring(L, job->kill_reason);
        lua_error(L);
    }
    if (lua_getstack(L, 0, &where) && lua_getinfo(L, "Sl", &where) && where.currentline > 0)
        snprintf(msg, sizeof msg, "%s:%d: CPU limit: ran more than %llu ms without "
                 "yielding; aborted", where.short_src, where.currentline,
                 (unsigned long long)(st->cpu_limit_ns / 1000000));
    else
        snprintf(msg, sizeof msg, "CPU limit: ran more than %llu ms without yielding; aborted",
                 (unsigned long long)(st->cpu_limit_ns / 1000000));
    if (job) {
        job->killed = 1;
        if (!job->kill_reason) job->kill_reason = strdup(msg);
    }
    lua_pushstring(L, msg);
    lua_error(L);
}

/* ---- protected helper ---- */

int weir_state_pcall(weir_state *st, lua_CFunction fn, void *ud, char *errbuf, size_t errlen) {
    int rc;
    lua_pushcfunction(st->L, fn);
    lua_pushlightuserdata(st->L, ud);
    rc = lua_pcall(st->L, 1, 0, 0);
    if (rc != LUA_OK) {
        if (errbuf && errlen) {
            const char *m = lua_tostring(st->L, -1);
            snprintf(errbuf, errlen, "%s", m ? m : "error object is not a string");
        }
        lua_pop(st->L, 1);
    }
    return rc;
}

/* ---- read-only proxies ---- */

static int weir_state_ro_newindex(lua_State *L) {
    const char *key = lua_tostring(L, 2);
    return luaL_error(L, "attempt to modify read-only table (field '%s')",
                      key ? key : "?");
}

/* Iterator over the real table held as upvalue 1; the state argument
 * (the proxy) is ignored. */
static int weir_state_ro_next(lua_State *L) {
    lua_settop(L, 2);
    if (lua_next(L, lua_upvalueindex(1))) return 2;
    lua_pushnil(L);
    return 1;
}

/* pairs(proxy) iterates the real table (the metatable's __index).  The
 * real table must never be handed out as the iterator state: the script
 * could write through it, so it stays an upvalue of a fresh iterator. */
static int weir_state_ro_pairs(lua_State *L) {
    if (!lua_getmetatable(L, 1)) return luaL_error(L, "pairs: not a read-only proxy");
    lua_pushliteral(L, "__index");
    if (lua_rawget(L, -2) != LUA_TTABLE) return luaL_error(L, "pairs: not a read-only proxy");
    lua_pushcclosure(L, weir_state_ro_next, 1);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* Replaces the table at top with a read-only proxy of it. */
static void weir_state_freeze(lua_State *L) {
    lua_newtable(L);                      /* t proxy */
    lua_createtable(L, 0, 4);             /* t proxy mt */
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, weir_state_ro_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, weir_state_ro_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);              /* t proxy */
    lua_remove(L, -2);                    /* proxy */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &weir_state_frozen_key);
    lua_pushvalue(L, -2);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

static int weir_state_is_frozen(lua_State *L, int idx) {
    int frozen;
    idx = lua_absindex(L, idx);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &weir_state_frozen_key);
    lua_pushvalue(L, idx);
    frozen = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 2);
    return frozen;
}

/* Nonzero when the table at idx has a metatable with a __metatable
 * field (its metatable is locked), other than a chunk env's: a
 * script's own globals table is its to rawset. */
static int weir_state_has_locked_mt(lua_State *L, int idx) {
    int locked;
    if (!lua_getmetatable(L, idx)) return 0;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &weir_state_env_mt_key);
    if (lua_rawequal(L, -1, -2)) {
        lua_pop(L, 2);
        return 0;
    }
    lua_pushliteral(L, "__metatable");
    locked = lua_rawget(L, -3) != LUA_TNIL;
    lua_pop(L, 3);
    return locked;
}

static int weir_state_is_user_locked(lua_State *L, int idx) {
    int mine;
    idx = lua_absindex(L, idx);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &weir_state_user_locked_key);
    lua_pushvalue(L, idx);
    mine = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 2);
    return mine;
}

/* rawset skips __newindex, so it must refuse what __newindex guards:
 * frozen proxies, and every table whose metatable is locked unless the
 * script locked it itself (engine tables such as json.array_mt keep
 * their guard behind a locked metatable). */
static int weir_state_rawset(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    if (weir_state_is_frozen(L, 1) ||
        (weir_state_has_locked_mt(L, 1) && !weir_state_is_user_locked(L, 1)))
        return luaL_error(L, "rawset: attempt to modify a read-only table");
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 1;
}

/* setmetatable(t, mt): the stock function (upvalue 1), refusing __gc.
 * Lua runs finalizers with hooks off, so a __gc that spins could never
 * be stopped by the CPU cap.  Lua only marks an object for finalization
 * when mt has a __gc field (raw) at this call, so checking here closes
 * every path: adding __gc to mt later has no effect.  Tables the script
 * locks itself (__metatable) are recorded so its own rawset still works
 * on them. */
static int weir_state_setmetatable(lua_State *L) {
    int locked = 0;
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "setmetatable: __gc metamethods are not allowed in "
                                 "weir scripts (finalizers cannot be interrupted)");
        lua_pop(L, 1);
        lua_pushliteral(L, "__metatable");
        locked = lua_rawget(L, 2) != LUA_TNIL;
        lua_pop(L, 1);
    }
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 2, 1);
    if (locked) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &weir_state_user_locked_key);
        lua_pushvalue(L, -2);
        lua_pushboolean(L, 1);
        lua_rawset(L, -3);
        lua_pop(L, 1);
    }
    return 1;
}

/* xpcall(f, handler, ...) with a C message handler around the user's.
 * Lua calls a message handler with hooks off when the error comes from
 * the CPU hook, so a handler that spins would never be stopped.  Once
 * the job is killed the handler returns the error unchanged without
 * calling the user's function. */
static int weir_state_xpcall_handler(lua_State *L) {
    weir_state *st = weir_state_of(L);
    if (st->slice_killed || (st->running && st->running->killed)) return 1;
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 1, 1);
    return 1;
}

static int weir_state_xpcall_finish(lua_State *L, int status, lua_KContext extra) {
    if (status != LUA_OK && status != LUA_YIELD) {
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - (int)extra;
}

static int weir_state_xpcall(lua_State *L) {
    int nargs = lua_gettop(L) - 2, status;
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, weir_state_xpcall_handler, 1);
    lua_replace(L, 2);                    /* f handler args... */
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);                  /* f handler args... true f */
    lua_rotate(L, 3, 2);                  /* f handler true f args... */
    status = lua_pcallk(L, nargs, LUA_MULTRET, 2, 2, weir_state_xpcall_finish);
    return weir_state_xpcall_finish(L, status, 2);
}

/* ---- C loops the count hook cannot interrupt ---- */

/* string.rep (upvalue 1) loops n times even when every piece is empty,
 * allocating nothing: the memory cap never stops it. */
static int weir_state_string_rep(lua_State *L) {
    size_t len, seplen;
    lua_Integer n;
    luaL_checklstring(L, 1, &len);
    n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &seplen);
    if (n > WEIR_STRING_REP_MAX)
        return luaL_error(L, "string.rep: repetition count %I is too large (at most %I)",
                          n, (lua_Integer)WEIR_STRING_REP_MAX);
    if (len + seplen == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* table.move (upvalue 1) walks its whole range in C, even over nils. */
static int weir_state_table_move(lua_State *L) {
    lua_Integer f = luaL_checkinteger(L, 2);
    lua_Integer e = luaL_checkinteger(L, 3);
    if (e >= f && (lua_Unsigned)e - (lua_Unsigned)f >= WEIR_TABLE_MOVE_MAX)
        return luaL_error(L, "table.move: range %I..%I is too large (at most %I elements)",
                          f, e, (lua_Integer)WEIR_TABLE_MOVE_MAX);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* ---- replaced globals ---- */

/* load(chunk [, name [, mode [, env]]]): text only; without env the
 * chunk shares the caller's _ENV, as in stock Lua. */
static int weir_state_load(lua_State *L) {
    weir_state *st = weir_state_of(L);
    size_t len;
    const char *s;
    const char *name;
    int has_env = !lua_isnone(L, 4);
    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_error(L, "load: only source text is accepted (got %s)",
                          luaL_typename(L, 1));
    s = lua_tolstring(L, 1, &len);
    name = luaL_optstring(L, 2, s);
    if (!lua_isnoneornil(L, 3)) {
        const char *mode = luaL_checkstring(L, 3);
        if (strchr(mode, 'b') && !strchr(mode, 't'))
            return luaL_error(L, "load: binary chunks are not allowed");
    }
    if (len > 0 && s[0] == LUA_SIGNATURE[0]) {
        lua_pushnil(L);
        lua_pushliteral(L, "load: binary chunks are not allowed");
        return 2;
    }
    if (luaL_loadbufferx(L, s, len, name, "t") != LUA_OK) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    if (has_env) {
        lua_pushvalue(L, 4);
    } else {
        /* the caller's _ENV: its upvalue named "_ENV", else a fresh env */
        lua_Debug ar;
        int found = 0;
        if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "f", &ar)) {
            int i;
            const char *up;
            for (i = 1; (up = lua_getupvalue(L, -1, i)) != NULL; i++) {
                if (strcmp(up, "_ENV") == 0) { found = 1; break; }
                lua_pop(L, 1);
            }
            if (found) lua_remove(L, -2);     /* drop the caller */
            else lua_pop(L, 1);
        }
        if (!found) weir_state_push_env(st, L);
    }
    if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
    return 1;
}

static int weir_state_collectgarbage(lua_State *L) {
    static const char *const allowed[] = {"collect", "count", "step", "isrunning", NULL};
    const char *opt = luaL_optstring(L, 1, "collect");
    int i;
    for (i = 0; allowed[i]; i++) {
        if (strcmp(opt, allowed[i]) == 0) {
            lua_pushvalue(L, lua_upvalueindex(1));
            lua_insert(L, 1);
            lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
            return lua_gettop(L);
        }
    }
    return luaL_error(L, "collectgarbage: option '%s' is not allowed in weir scripts", opt);
}

static int weir_state_print(lua_State *L) {
    int n = lua_gettop(L), i;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (i = 1; i <= n; i++) {
        if (i > 1) luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_addchar(&b, '\n');
    luaL_pushresult(&b);
    fwrite(lua_tostring(L, -1), 1, lua_rawlen(L, -1), stdout);
    fflush(stdout);
    return 0;
}

/* ---- os subset ---- */

static int weir_state_env_allowed(const char *allow, const char *name) {
    const char *p = allow;
    size_t nlen = strlen(name);
    if (!allow) return 0;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && isspace((unsigned char)*p)) { p++; len--; }
        while (len && isspace((unsigned char)p[len - 1])) len--;
        if (len) {
            if (p[len - 1] == '*') {
                if (nlen >= len - 1 && strncmp(name, p, len - 1) == 0) return 1;
            } else if (len == nlen && strncmp(name, p, len) == 0) {
                return 1;
            }
        }
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

static int weir_state_getenv(lua_State *L) {
    weir_state *st = weir_state_of(L);
    const char *name = luaL_checkstring(L, 1);
    const char *v;
    if (!weir_state_env_allowed(st->eng->cfg.env_allow, name)) {
        lua_pushnil(L);
        return 1;
    }
    v = getenv(name);
    if (v) lua_pushstring(L, v);
    else lua_pushnil(L);
    return 1;
}

static int weir_state_os_date(lua_State *L) {
    size_t len = 0;
    if (lua_type(L, 1) == LUA_TSTRING) {
        lua_tolstring(L, 1, &len);
        if (len > WEIR_OS_DATE_MAX_FORMAT)
            return luaL_error(L, "os.date: format longer than %d bytes",
                              WEIR_OS_DATE_MAX_FORMAT);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* ---- pattern cost guard ----
 * Lua patterns backtrack inside C, where the CPU hook cannot interrupt
 * them.  Before matching we estimate the worst case and refuse what is
 * clearly out of reach.  The model is deliberately conservative:
 *   - every item that can backtrack counts as a factor of (n + 1) on an
 *     n-byte subject: repetitions (* + - ?), %b (it scans to the end
 *     when the brackets never balance) and back-references;
 *   - a repetition that ends the pattern is free: whatever it matches,
 *     the rest of the pattern (nothing) succeeds at once;
 *   - an unanchored search retries from every position: one more factor;
 *   - without backtracking items, each attempt still compares up to the
 *     pattern's length;
 *   - a plain find costs len(subject) * len(needle) (naive search). */

typedef struct {
    int items;          /* backtracking items that count */
    int anchored;
} weir_state_pattern_cost;

static const char *weir_state_class_end(const char *p, const char *end) {
    if (*p == '%') return p + 1 < end ? p + 2 : end;
    if (*p == '[') {
        p++;
        if (p < end && *p == '^') p++;
        do {
            if (p >= end) return end;
            if (*p == '%' && p + 1 < end) p++;
            p++;
        } while (p < end && *p != ']');
        return p < end ? p + 1 : end;
    }
    return p + 1;
}

/* Nonzero when only ')' (capture ends) are left from p. */
static int weir_state_pattern_tail(const char *p, const char *end) {
    while (p < end && *p == ')') p++;
    return p == end;
}

static weir_state_pattern_cost weir_state_pattern_scan(const char *p, size_t len) {
    const char *end = p + len;
    weir_state_pattern_cost c = {0, 0};
    if (p < end && *p == '^') { c.anchored = 1; p++; }
    while (p < end) {
        const char *ce;
        if (*p == '(' || *p == ')') { p++; continue; }
        if (*p == '%' && p + 1 < end) {
            char k = p[1];
            if (k == 'b') { c.items++; p += 4; continue; }
            if (k == 'f') { p += 2; if (p < end) p = weir_state_class_end(p, end); continue; }
            if (isdigit((unsigned char)k)) { c.items++; p += 2; continue; }
        }
        ce = weir_state_class_end(p, end);
        if (ce < end && (*ce == '*' || *ce == '+' || *ce == '-' || *ce == '?')) {
            p = ce + 1;
            if (!weir_state_pattern_tail(p, end)) c.items++;
        } else {
            p = ce;
        }
    }
    return c;
}

static int weir_state_pattern_refuse(lua_State *L, const char *what) {
    luaL_where(L, 1);
    lua_pushstring(L, what);
    lua_concat(L, 2);
    return lua_error(L);
}

static int weir_state_pattern_guard(lua_State *L) {
    const char *fname = lua_tostring(L, lua_upvalueindex(2));
    size_t slen, plen;
    double n, steps;
    char msg[320];
    luaL_checklstring(L, 1, &slen);
    luaL_checklstring(L, 2, &plen);
    n = (double)slen;
    if (strcmp(fname, "find") == 0 && lua_toboolean(L, 4)) {
        steps = plen <= slen ? (n - (double)plen + 1) * (double)plen : 0;
        if (steps > WEIR_PATTERN_MAX_STEPS) {
            snprintf(msg, sizeof msg, "string.find: plain search for a %zu-byte string in "
                     "a %zu-byte subject is too expensive (worst case %.3g steps); split "
                     "the input", plen, slen, steps);
            return weir_state_pattern_refuse(L, msg);
        }
    } else {
        weir_state_pattern_cost c = weir_state_pattern_scan(lua_tostring(L, 2), plen);
        int anchored = c.anchored && strcmp(fname, "gmatch") != 0;
        steps = pow(n + 1, c.items + (anchored ? 0 : 1));
        if (c.items == 0 && plen > 1) steps *= (double)plen;  /* literal compares */
        if (steps > WEIR_PATTERN_MAX_STEPS) {
            snprintf(msg, sizeof msg, "string.%s: pattern with %d repetition items is too "
                     "expensive on a %zu-byte subject (worst case %.3g steps); simplify "
                     "the pattern or split the input", fname, c.items, slen, steps);
            return weir_state_pattern_refuse(L, msg);
        }
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* ---- require ---- */

static int weir_state_valid_module_name(const char *name) {
    size_t i, n = strlen(name);
    if (n == 0 || n > WEIR_MODULE_NAME_MAX || name[0] == '.' || name[n - 1] == '.')
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!(isalnum(c) || c == '_' || c == '-' || c == '.')) return 0;
        if (c == '.' && name[i + 1] == '.') return 0;
    }
    return 1;
}

static int weir_state_file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fclose(f);
    return 1;
}

/* Pushes the path of module `name` found under the state's roots, or
 * returns 0 after pushing the list of places tried. */
static int weir_state_find_module(weir_state *st, lua_State *L, const char *name) {
    const char *roots[WEIR_MAX_ROOTS + 2];
    int nroots = 0, i, j;
    char rel[WEIR_MODULE_NAME_MAX + 16];
    luaL_Buffer tried;
    for (i = 0; i < st->nroots; i++) roots[nroots++] = st->roots[i];
    if (st->eng->cfg.lib_path) roots[nroots++] = st->eng->cfg.lib_path;
    if (st->eng->cfg.connectors_path) roots[nroots++] = st->eng->cfg.connectors_path;
    snprintf(rel, sizeof rel, "%s", name);
    for (i = 0; rel[i]; i++)
        if (rel[i] == '.') rel[i] = '/';
    luaL_buffinit(L, &tried);
    for (i = 0; i < nroots; i++) {
        static const char *const forms[] = {"%s/%s.lua", "%s/%s/init.lua"};
        for (j = 0; j < 2; j++) {
            char path[4096];
            snprintf(path, sizeof path, forms[j], roots[i], rel);
            if (weir_state_file_exists(path)) {
                luaL_pushresult(&tried);
                lua_pop(L, 1);
                lua_pushstring(L, path);
                return 1;
            }
            luaL_addstring(&tried, "\n\tno file '");
            luaL_addstring(&tried, path);
            luaL_addstring(&tried, "'");
        }
    }
    luaL_pushresult(&tried);
    return 0;
}

static int weir_state_require(lua_State *L) {
    weir_state *st = weir_state_of(L);
    const char *name = luaL_checkstring(L, 1);
    const weir_module *m;
    lua_settop(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &weir_state_loaded_key);    /* 2 */
    lua_getfield(L, 2, name);
    if (lua_touserdata(L, -1) == &weir_state_loading)
        return luaL_error(L, "require: loop while loading module '%s'", name);
    if (!lua_isnil(L, -1)) return 1;
    lua_pop(L, 1);
    m = weir_module_find(name);
    if (m) {
        lua_pushcfunction(L, m->open);
        lua_call(L, 0, 1);
        /* the cached table is shared by every chunk of the state: hand
         * out a read-only view so one job cannot rewrite json.encode or
         * task.sleep for the others */
        if (lua_type(L, -1) == LUA_TTABLE) weir_state_freeze(L);
    } else {
        if (!weir_state_valid_module_name(name))
            return luaL_error(L, "require: invalid module name '%s' (letters, digits, "
                                 "'_', '-' and '.' separators only)", name);
        if (!weir_state_find_module(st, L, name))
            return luaL_error(L, "module '%s' not found:%s", name, lua_tostring(L, -1));
        /* stack: name loaded path */
        lua_pushlightuserdata(L, &weir_state_loading);
        lua_setfield(L, 2, name);
        if (weir_state_load_file(st, L, lua_tostring(L, 3)) != LUA_OK) {
            lua_pushnil(L);
            lua_setfield(L, 2, name);
            return lua_error(L);
        }
        lua_pushvalue(L, 1);
        lua_pushvalue(L, 3);
        if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
            lua_pushnil(L);
            lua_setfield(L, 2, name);
            return lua_error(L);
        }
    }
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, 2, name);
    return 1;
}

/* ---- building the sandbox ---- */

static void weir_state_set_cfunc(lua_State *L, const char *name, lua_CFunction fn) {
    lua_pushcfunction(L, fn);
    lua_setfield(L, -2, name);
}

/* Copies the named fields of the table at src into the table at top. */
static void weir_state_copy_fields(lua_State *L, int src, const char *const *names) {
    for (; *names; names++) {
        lua_getfield(L, src, *names);
        lua_setfield(L, -2, *names);
    }
}

/* Replaces string.NAME with the pattern guard around the original. */
static void weir_state_guard_pattern(lua_State *L, const char *name) {
    lua_getfield(L, -1, name);
    lua_pushstring(L, name);
    lua_pushcclosure(L, weir_state_pattern_guard, 2);
    lua_setfield(L, -2, name);
}

/* Replaces field NAME of the table at top with fn, the original as its
 * upvalue 1. */
static void weir_state_wrap(lua_State *L, const char *name, lua_CFunction fn) {
    lua_getfield(L, -1, name);
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, -2, name);
}

static int weir_state_build(lua_State *L) {
    static const char *const base_names[] = {
        "assert", "error", "ipairs", "next", "pairs", "pcall", "xpcall", "select",
        "tonumber", "tostring", "type", "rawequal", "rawget", "rawlen",
        "getmetatable", "setmetatable", "_VERSION", NULL};
    static const char *const os_names[] = {"time", "clock", "difftime", NULL};
    static const struct { const char *name; lua_CFunction open; } libs[] = {
        {LUA_GNAME, luaopen_base},        {LUA_STRLIBNAME, luaopen_string},
        {LUA_TABLIBNAME, luaopen_table},  {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8},  {LUA_COLIBNAME, luaopen_coroutine},
        {LUA_OSLIBNAME, luaopen_os},      {NULL, NULL}};
    int i, g;

    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &weir_state_frozen_key);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &weir_state_loaded_key);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &weir_state_user_locked_key);

    /* Stock libraries land in the registry's globals table, which we
     * then replace: nothing of it stays reachable except via base. */
    for (i = 0; libs[i].name; i++) {
        luaL_requiref(L, libs[i].name, libs[i].open, 1);
        lua_pop(L, 1);
    }
    lua_pushglobaltable(L);
    g = lua_gettop(L);

    lua_newtable(L);                                  /* base */
    weir_state_copy_fields(L, g, base_names);
    lua_getfield(L, g, "collectgarbage");
    lua_pushcclosure(L, weir_state_collectgarbage, 1);
    lua_setfield(L, -2, "collectgarbage");
    weir_state_set_cfunc(L, "load", weir_state_load);
    weir_state_set_cfunc(L, "xpcall", weir_state_xpcall);
    lua_getfield(L, g, "setmetatable");
    lua_pushcclosure(L, weir_state_setmetatable, 1);
    lua_setfield(L, -2, "setmetatable");
    weir_state_set_cfunc(L, "rawset", weir_state_rawset);
    weir_state_set_cfunc(L, "print", weir_state_print);
    weir_state_set_cfunc(L, "require", weir_state_require);

    /* string: no dump, pattern guard; its metatable locked */
    lua_getfield(L, g, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    weir_state_guard_pattern(L, "find");
    weir_state_guard_pattern(L, "match");
    weir_state_guard_pattern(L, "gmatch");
    weir_state_guard_pattern(L, "gsub");
    weir_state_wrap(L, "rep", weir_state_string_rep);
    weir_state_freeze(L);
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);                          /* base strproxy "" mt */
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);
    lua_setfield(L, -2, LUA_STRLIBNAME);

    lua_getfield(L, g, LUA_TABLIBNAME);
    weir_state_wrap(L, "move", weir_state_table_move);
    weir_state_freeze(L);
    lua_setfield(L, -2, LUA_TABLIBNAME);
    lua_getfield(L, g, LUA_MATHLIBNAME);
    weir_state_freeze(L);
    lua_setfield(L, -2, LUA_MATHLIBNAME);
    lua_getfield(L, g, LUA_UTF8LIBNAME);
    weir_state_freeze(L);
    lua_setfield(L, -2, LUA_UTF8LIBNAME);

    lua_getfield(L, g, LUA_COLIBNAME);
    weir_job_open_coroutine(L);
    weir_state_freeze(L);
    lua_setfield(L, -2, LUA_COLIBNAME);

    lua_getfield(L, g, LUA_OSLIBNAME);                /* base stockos */
    lua_newtable(L);                                  /* base stockos os */
    weir_state_copy_fields(L, lua_gettop(L) - 1, os_names);
    lua_getfield(L, -2, "date");
    lua_pushcclosure(L, weir_state_os_date, 1);
    lua_setfield(L, -2, "date");
    weir_state_set_cfunc(L, "getenv", weir_state_getenv);
    weir_state_freeze(L);
    lua_setfield(L, -3, LUA_OSLIBNAME);
    lua_pop(L, 1);

    /* base stays unreachable: envs reach it through a locked metatable */
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &weir_state_base_key);
    lua_createtable(L, 0, 2);                         /* env metatable */
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &weir_state_env_mt_key);

    /* the registry's globals become a read-only view of base */
    weir_state_freeze(L);
    lua_rawseti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);

    /* loaded modules of the stock loader must not leak the real libs */
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_settop(L, 0);
    return 0;
}

void weir_state_push_env(weir_state *st, lua_State *L) {
    (void)st;
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "_G");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &weir_state_env_mt_key);
    lua_setmetatable(L, -2);
}

/* ---- public API ---- */

weir_state *weir_state_new(weir_engine *e, const char *name, const char *const *roots,
                           int nroots, const char **err) {
    weir_state *st = calloc(1, sizeof *st);
    int i;
    if (!st) { *err = "out of memory"; return NULL; }
    st->eng = e;
    st->mem_limit = e->cfg.mem_limit;
    st->cpu_limit_ns = e->cfg.cpu_limit_ms * 1000000ull;
    st->name = strdup(name ? name : "script");
    if (!st->name) goto oom;
    if (nroots > WEIR_MAX_ROOTS) nroots = WEIR_MAX_ROOTS;
    for (i = 0; i < nroots; i++) {
        st->roots[i] = strdup(roots[i]);
        if (!st->roots[i]) goto oom;
        st->nroots++;
    }
    st->L = lua_newstate(weir_state_alloc, st);
    if (!st->L) goto oom;
    *(weir_state **)lua_getextraspace(st->L) = st;
    lua_atpanic(st->L, weir_state_panic);
    lua_pushcfunction(st->L, weir_state_build);
    if (lua_pcall(st->L, 0, 0, 0) != LUA_OK) {
        *err = "cannot build the sandbox (memory limit too small?)";
        lua_close(st->L);
        st->L = NULL;
        goto fail;
    }
    /* Threads inherit the hook of the thread that creates them. */
    lua_sethook(st->L, weir_state_cpu_hook, LUA_MASKCOUNT, WEIR_HOOK_COUNT);
    st->next = e->states;
    e->states = st;
    return st;
oom:
    *err = "out of memory";
fail:
    for (i = 0; i < st->nroots; i++) free(st->roots[i]);
    free(st->name);
    free(st);
    return NULL;
}

void weir_state_free(weir_state *st) {
    weir_state **pp;
    weir_job *job;
    int i;
    if (!st) return;
    st->closing = 1;
    /* kill every job; on_done callbacks may release them */
    for (job = st->jobs; job; ) {
        weir_job *next = job->next_in_state;
        weir_job_retain(job);
        weir_job_kill(job, "the script's state was closed");
        next = job->next_in_state;
        weir_job_release(job);
        job = next;
    }
    /* jobs still referenced by their owners outlive the state, detached */
    for (job = st->jobs; job; job = job->next_in_state) {
        job->st = NULL;
        job->co = NULL;
        job->co_ref = job->err_ref = job->locals_ref = LUA_NOREF;
    }
    st->jobs = NULL;
    /* finalizers are user code: bound them by the CPU cap too */
    st->running = NULL;
    st->slice_start_ns = uv_hrtime();
    st->slice_killed = 0;
    lua_sethook(st->L, weir_state_cpu_hook, LUA_MASKCOUNT, WEIR_HOOK_COUNT);
    lua_close(st->L);
    for (pp = &st->eng->states; *pp; pp = &(*pp)->next)
        if (*pp == st) { *pp = st->next; break; }
    for (i = 0; i < st->nroots; i++) free(st->roots[i]);
    free(st->name);
    free(st);
}

int weir_state_load_buffer(weir_state *st, lua_State *L, const char *buf, size_t len,
                           const char *chunkname) {
    int rc;
    if (len > 0 && buf[0] == LUA_SIGNATURE[0]) {
        lua_pushfstring(L, "%s: binary chunks are not allowed",
                        chunkname[0] == '@' ? chunkname + 1 : chunkname);
        return LUA_ERRSYNTAX;
    }
    rc = luaL_loadbufferx(L, buf, len, chunkname, "t");
    if (rc != LUA_OK) return rc;
    weir_state_push_env(st, L);
    if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
    return LUA_OK;
}

int weir_state_load_file(weir_state *st, lua_State *L, const char *path) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL, *chunk = NULL;
    size_t len = 0, cap = 0;
    int rc;
    if (!f) {
        lua_pushfstring(L, "cannot open %s: %s", path, strerror(errno));
        return LUA_ERRFILE;
    }
    for (;;) {
        size_t n;
        if (len == cap) {
            char *p = realloc(buf, cap ? cap * 2 : 8192);
            if (!p) {
                free(buf);
                fclose(f);
                lua_pushfstring(L, "cannot read %s: out of memory", path);
                return LUA_ERRMEM;
            }
            buf = p;
            cap = cap ? cap * 2 : 8192;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        fclose(f);
        lua_pushfstring(L, "cannot read %s", path);
        return LUA_ERRFILE;
    }
    fclose(f);
    chunk = malloc(strlen(path) + 2);
    if (!chunk) {
        free(buf);
        lua_pushfstring(L, "cannot read %s: out of memory", path);
        return LUA_ERRMEM;
    }
    chunk[0] = '@';
    strcpy(chunk + 1, path);
    /* skip a #! line, as lua.c does, keeping line numbers right */
    if (len > 1 && buf[0] == '#' && buf[1] == '!') {
        size_t i = 0;
        while (i < len && buf[i] != '\n') buf[i++] = ' ';
        buf[0] = '-'; buf[1] = '-';
    }
    rc = weir_state_load_buffer(st, L, buf, len, chunk);
    free(chunk);
    free(buf);
    return rc;
}

/* Runs on the state's main thread (protected).  The message string is
 * kept on L's stack until it has been copied: luaL_traceback allocates,
 * and an emergency collection at the memory cap would otherwise free a
 * string that nothing else references.  Only raw reads: no user code
 * (__index, __tostring) ever runs inside the formatter. */
char *weir_state_error_string(lua_State *co, int with_traceback) {
    lua_State *L = weir_state_of(co)->L;
    const char *msg = NULL;
    char buf[128];
    char *out;
    int t = lua_type(co, -1);
    int base = lua_gettop(L);
    if (t == LUA_TSTRING || t == LUA_TNUMBER || t == LUA_TTABLE) {
        lua_pushvalue(co, -1);
        lua_xmove(co, L, 1);
    }
    if (t == LUA_TSTRING) {
        msg = lua_tostring(L, -1);
    } else if (t == LUA_TNUMBER) {
        lua_pushvalue(L, -1);               /* convert a copy, not co's value */
        msg = lua_tostring(L, -1);
    } else if (t == LUA_TTABLE) {
        /* structured errors ({message=..., kind=...}) */
        lua_pushliteral(L, "message");
        if (lua_rawget(L, -2) == LUA_TSTRING) msg = lua_tostring(L, -1);
        else msg = "(error object is a table without a 'message' field)";
    } else if (t == LUA_TNIL) {
        msg = "error(nil) raised (no error message)";
    } else {
        snprintf(buf, sizeof buf, "(error object is a %s value)", lua_typename(co, t));
        msg = buf;
    }
    if (!with_traceback) {
        out = strdup(msg);
    } else {
        luaL_traceback(L, co, msg, 0);
        out = strdup(lua_tostring(L, -1));
    }
    lua_settop(L, base);
    return out;
}
