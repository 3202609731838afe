-- Attack: read environment variables that were not allow-listed
-- (HOME and a secret the runner exported).  os.getenv may only answer for
-- names in WEIR_ENV_ALLOW; the runner allows WEIR_HOSTILE_ALLOWED only.
-- expect: contained: os.getenv
local params = ...
local home = os.getenv("HOME")
if home ~= nil then error("LEAK: os.getenv('HOME') = " .. home) end
local secret = os.getenv(params.secret_var)
if secret ~= nil then error("LEAK: os.getenv read the secret: " .. secret) end
-- The allowed name must still work, or the nils above prove nothing.
if os.getenv("WEIR_HOSTILE_ALLOWED") ~= "yes" then
  error("os.getenv does not read the allowed name either (the probe is void)")
end
error("contained: os.getenv returned nil for HOME and the secret")
