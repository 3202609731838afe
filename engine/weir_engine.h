/*
 * weir_engine.h -- the process-wide engine: one libuv loop, the run queue
 * of coroutines ready to resume, configuration, and the registry of
 * built-in modules.
 *
 * Ownership: the engine owns its loop (unless one is passed in), every
 * weir_state created on it, and the per-engine resources of modules
 * (the curl multi handle, ...).  weir_engine_free() cancels what is
 * pending, closes every state and frees everything.
 */
#ifndef WEIR_ENGINE_H
#define WEIR_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <lua.h>

#include "weir_log.h"

#define WEIR_VERSION "0.1.0"

typedef struct weir_engine weir_engine;
typedef struct weir_state weir_state;
typedef struct weir_job weir_job;
typedef struct weir_store weir_store;

/* Defaults: see docs/architecture.md. */
#define WEIR_DEFAULT_MEM_LIMIT   ((size_t)256 * 1024 * 1024)
#define WEIR_DEFAULT_CPU_LIMIT_MS 5000

typedef struct weir_config {
    size_t mem_limit;          /* bytes per Lua state; 0 = unlimited */
    uint64_t cpu_limit_ms;     /* max run time without yielding */
    const char *lib_path;      /* the engine's lua/ directory */
    const char *connectors_path; /* connectors/ directory */
    const char *ca_bundle;     /* NULL: libcurl's default */
    const char *env_allow;     /* comma list of names os.getenv may read */
    const char *store_url;     /* NULL: SQLite in $WEIR_DATA_DIR */
} weir_config;

/* A built-in module, loadable with require(name) from every state. */
typedef struct weir_module {
    const char *name;                    /* "weir.http" */
    int (*open)(lua_State *L);           /* pushes the module table */
    int (*engine_init)(weir_engine *e);  /* optional; 0 or -errno style */
    void (*engine_close)(weir_engine *e);/* optional */
} weir_module;

struct weir_engine {
    uv_loop_t *loop;
    int owns_loop;
    weir_config cfg;
    weir_log *log;

    /* Run queue: jobs whose pending operation completed (or new jobs).
     * Drained from an idle handle so resumes never happen inside a
     * library callback (curl, hiredis, libpq are not re-entrant). */
    weir_job *ready_head, *ready_tail;
    uv_idle_t ready_idle;
    int ready_idle_active;

    weir_state *states;        /* every live state, linked */
    uint64_t clock_offset_ns;  /* injectable clock for tests */

    void *http;                /* weir_http private data */
    weir_store *store;         /* opened on first use (weir_store_of_engine) */
    int closing;
};

/* The table of built-in modules (weir_modules.c). */
extern const weir_module weir_modules[];

void weir_config_defaults(weir_config *cfg);

/* Creates an engine on `loop` (NULL: a new loop owned by the engine).
 * Returns NULL and sets *err (static string) on failure. */
weir_engine *weir_engine_new(uv_loop_t *loop, const weir_config *cfg,
                             const char **err);
void weir_engine_free(weir_engine *e);

/* Runs the loop until nothing is pending (UV_RUN_DEFAULT). */
int weir_engine_run(weir_engine *e);

/* Monotonic engine time in nanoseconds / seconds (with test offset). */
uint64_t weir_engine_now_ns(const weir_engine *e);

/* Queue a job to be resumed on the next loop iteration. */
void weir_engine_ready(weir_engine *e, weir_job *job);

const weir_module *weir_module_find(const char *name);

#endif
