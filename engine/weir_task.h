/*
 * weir_task.h -- the "weir.task" module: sleep, spawn / wait / all,
 * now.  Timers are uv_timer_t owned by ops; spawned tasks are jobs in
 * the caller's state.
 */
#ifndef WEIR_TASK_H
#define WEIR_TASK_H

#include <lua.h>

int weir_open_task(lua_State *L);

#endif
