/*
 * weir_log.h -- JSON-lines logging with secret redaction.
 *
 * Every line is one JSON object: {"time","level","recipe","job","msg",
 * ...fields}.  Values registered with weir_log_add_secret() are replaced
 * by "[REDACTED]" in every line written, and in any string passed through
 * weir_log_redact() (error messages, run history, API output).
 */
#ifndef WEIR_LOG_H
#define WEIR_LOG_H

#include <stddef.h>
#include <stdio.h>
#include <lua.h>

typedef enum {
    WEIR_LOG_DEBUG = 0,
    WEIR_LOG_INFO,
    WEIR_LOG_WARN,
    WEIR_LOG_ERROR
} weir_log_level;

typedef struct weir_log weir_log;

/* Writes to stderr until weir_log_open_file() is called. */
weir_log *weir_log_new(void);
void weir_log_free(weir_log *lg);

/* Returns 0, or -errno when the file cannot be opened. */
int weir_log_open_file(weir_log *lg, const char *path);
void weir_log_set_level(weir_log *lg, weir_log_level level);
weir_log_level weir_log_get_level(const weir_log *lg);
/* "debug" | "info" | "warn" | "error" -> level; -1 when unknown. */
int weir_log_level_parse(const char *name);
const char *weir_log_level_name(weir_log_level level);

/* Registers a secret value (copied).  Values shorter than 4 bytes are
 * refused (-1): redacting "a" everywhere would destroy every line.
 * Returns -2 when the engine already holds 4096 secrets or 1 MiB of
 * them (they live outside every state's memory cap), -1 on OOM. */
int weir_log_add_secret(weir_log *lg, const char *value, size_t len);
size_t weir_log_secret_count(const weir_log *lg);

/* Returns a malloc'd copy of s with every secret (raw or JSON-escaped)
 * replaced by [REDACTED]; *out_len gets its length.  NULL on OOM. */
char *weir_log_redact(const weir_log *lg, const char *s, size_t len,
                      size_t *out_len);

/* fields_json: NULL or an encoded JSON object whose members are merged
 * into the line.  recipe / job may be NULL. */
void weir_log_write(weir_log *lg, weir_log_level level, const char *recipe,
                    const char *job, const char *msg, const char *fields_json);

/* Lua module "weir.log". */
int weir_open_log(lua_State *L);

#endif
