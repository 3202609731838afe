-- Attack: the log threshold is engine-wide: one script silencing the
-- logs of every other script (and recipe) of the process.  Either
-- log.level refuses, or it changes this state only: the runner checks the
-- engine's log level is unchanged after this script.
-- expect: log.level
local log = require "weir.log"
log.level("error")
error("contained: log.level changed this script's threshold only")
