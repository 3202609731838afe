/*
 * weir_state.h -- a sandboxed Lua 5.4 state: one per script or recipe
 * generation.  Many jobs of that script run as coroutines inside it.
 *
 * What the sandbox guarantees (docs/architecture.md has the why):
 *   - only allow-listed libraries and globals; no io, debug, C modules,
 *     dofile/loadfile, string.dump; load() accepts text only;
 *   - library tables are read-only proxies, shared metatables locked;
 *   - every chunk (script, required module) gets its own global table,
 *     so globals never leak between scripts;
 *   - require() resolves only under the state's roots;
 *   - memory is capped by the allocator; CPU time without yielding is
 *     capped by a count hook whose error pcall cannot swallow.
 */
#ifndef WEIR_STATE_H
#define WEIR_STATE_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "weir_engine.h"

#define WEIR_MAX_ROOTS 8
/* VM instructions between two looks at the clock by the CPU hook. */
#define WEIR_HOOK_COUNT 10000

struct weir_state {
    weir_engine *eng;
    lua_State *L;
    char *name;                 /* recipe / script name for logs */

    size_t mem_used;
    size_t mem_limit;           /* 0 = unlimited */
    size_t mem_peak;
    uint64_t cpu_limit_ns;      /* 0 = unlimited */

    char *roots[WEIR_MAX_ROOTS];/* require() search roots */
    int nroots;

    weir_job *running;          /* job being resumed right now */
    uint64_t slice_start_ns;    /* when Lua code last started running */
    int slice_killed;           /* the CPU cap fired in this slice */
    weir_job *jobs;             /* every live job of this state */
    int closing;
    int close_depth;            /* nested coroutine.close calls */
    int ntasks;                 /* live jobs started by task.spawn */

    weir_state *next;           /* engine's list */
};

/* Creates a state on engine e.  `name` labels logs; roots (may be NULL)
 * are directories require() searches before the engine's lua/ and
 * connectors/ directories.  NULL + *err on failure. */
weir_state *weir_state_new(weir_engine *e, const char *name,
                           const char *const *roots, int nroots,
                           const char **err);

/* Cancels every job of the state and closes it. */
void weir_state_free(weir_state *st);

/* The state that owns L (any thread of it). */
static inline weir_state *weir_state_of(lua_State *L) {
    return *(weir_state **)lua_getextraspace(L);
}

/* Loads a script file as a chunk with a fresh global table (text only,
 * chunk name "@path").  Pushes the function, or returns nonzero and
 * pushes an error message. */
int weir_state_load_file(weir_state *st, lua_State *L, const char *path);

/* Loads text the same way; chunkname as for lua_load. */
int weir_state_load_buffer(weir_state *st, lua_State *L, const char *buf,
                           size_t len, const char *chunkname);

/* Pushes a new environment table for a chunk (globals fall back to the
 * sandbox's read-only base). */
void weir_state_push_env(weir_state *st, lua_State *L);

/* Formats the error at the top of thread co (string or table with
 * message; read raw, no metamethod runs) with a traceback of co.
 * malloc'd; never NULL except OOM.  Allocates on the state's main
 * thread: call it in protected mode. */
char *weir_state_error_string(lua_State *co, int with_traceback);

/* Count hook enforcing the CPU cap; installed on every job thread. */
void weir_state_cpu_hook(lua_State *L, lua_Debug *ar);

/* Runs fn(L) on the state's main thread in protected mode with ud as its
 * only argument (a light userdata).  Returns a LUA_* status; on error
 * the message is copied into errbuf (may be NULL) and popped. */
int weir_state_pcall(weir_state *st, lua_CFunction fn, void *ud,
                     char *errbuf, size_t errlen);

#endif
