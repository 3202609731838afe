/*
 * weir_lib.h -- the "weir" module: what a job says about itself to the
 * engine (retry, fail, counts, its own identity).
 */
#ifndef WEIR_LIB_H
#define WEIR_LIB_H

#include <lua.h>

#include "weir_job.h"

int weir_open_lib(lua_State *L);

/* Counters a job reported with weir.count (0 when never counted). */
typedef struct weir_lib_counts {
    long long read, written, skipped, failed;
} weir_lib_counts;

/* Reads the job's counters; call from protected context or after the
 * job ended (only reads existing tables: never raises). */
void weir_lib_get_counts(lua_State *L, weir_job *job, weir_lib_counts *out);

/* Error kinds raised by weir.retry / weir.fail, read by the job runner. */
#define WEIR_ERR_RETRY "retry"
#define WEIR_ERR_PERMANENT "permanent"

#endif
