-- Attack: get the full 'io' library back through require.
-- require only knows the built-in weir.* modules and Lua files under the
-- state's roots; the stock loaders and package.loaded are gone.
-- expect: module 'io' not found
local lib = require "io"
error("LEAK: require 'io' returned a " .. type(lib))
