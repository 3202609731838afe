-- Attack: get the full 'debug' library back through require.
-- require only knows the built-in weir.* modules and Lua files under the
-- state's roots; the stock loaders and package.loaded are gone.
-- expect: module 'debug' not found
local lib = require "debug"
error("LEAK: require 'debug' returned a " .. type(lib))
