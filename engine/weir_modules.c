/*
 * weir_modules.c -- the built-in modules every state can require.
 * Order matters for engine_init (first to last) and engine_close (last
 * to first).
 */
#include "weir_engine.h"

#include "weir_crypto.h"
#include "weir_cursor.h"
#include "weir_http.h"
#include "weir_json.h"
#include "weir_ledger.h"
#include "weir_lib.h"
#include "weir_log.h"
#include "weir_pg.h"
#include "weir_redis.h"
#include "weir_task.h"

const weir_module weir_modules[] = {
    {"weir", weir_open_lib, NULL, NULL},
    {"weir.json", weir_open_json, NULL, NULL},
    {"weir.crypto", weir_open_crypto, NULL, NULL},
    {"weir.log", weir_open_log, NULL, NULL},
    {"weir.task", weir_open_task, NULL, NULL},
    {"weir.ledger", weir_open_ledger, NULL, NULL},
    {"weir.cursor", weir_open_cursor, NULL, NULL},
    {"weir.http", weir_open_http, weir_http_engine_init, weir_http_engine_close},
    {"weir.redis", weir_open_redis, weir_redis_engine_init, weir_redis_engine_close},
    {"weir.pg", weir_open_pg, weir_pg_engine_init, weir_pg_engine_close},
    {NULL, NULL, NULL, NULL}};
