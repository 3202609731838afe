-- Attack: get the full 'os' library back through require.
-- require only knows the built-in weir.* modules and Lua files under the
-- state's roots; the stock loaders and package.loaded are gone.
-- expect: module 'os' not found
local lib = require "os"
error("LEAK: require 'os' returned a " .. type(lib))
