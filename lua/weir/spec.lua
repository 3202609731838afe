-- weir.spec -- the test runner behind `weir test` (busted-flavoured, small).
--
-- The C side loads each *_spec.lua as a chunk with its own environment and
-- runs, inside one job:  spec.run_file(chunk, env, path, opts).
-- run_file installs describe / it / pending / hooks / expect / assert into
-- env, runs the chunk to collect the tests, then runs them in order, one
-- output line each.  It returns passed, failed (and pending) counts; the
-- C side prints the final "N passed, N failed" line.
--
-- This runs inside the sandbox: no debug library.  Error positions come
-- from error(msg, level); the "traceback" of a failure is rebuilt by
-- asking error() for the position of each stack level from inside the
-- xpcall handler (pcall(error, "", level) returns "src:line: ").

local M = {}

local MAX_DEPTH = 4       -- nesting shown by repr before "{...}"
local MAX_ITEMS = 20      -- entries shown per table
local MAX_STRING = 120    -- bytes shown per string
local MAX_DIFFS = 20      -- difference lines per deep-equality failure
local TRACE_LEVELS = 40   -- stack levels examined for a failure

local json_ok, json = pcall(require, "weir.json")
local json_null = json_ok and type(json) == "table" and json.null or nil

-- Source name of this file as error positions spell it, so our own frames
-- can be left out of tracebacks.
local own_source = select(2, pcall(error, "", 2)):match("^(.*):%d+: $")

---------------------------------------------------------------------------
-- Safe serializer: never calls __tostring / __index on tables, survives
-- cycles, bounds depth, item count and string length.
---------------------------------------------------------------------------

local escapes = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
                  ['"'] = '\\"', ["\\"] = "\\\\" }

local function quote(s)
    local shown = #s > MAX_STRING and s:sub(1, MAX_STRING) or s
    shown = shown:gsub('[%c"\\]', function(c)
        return escapes[c] or string.format("\\%03d", c:byte())
    end)
    if #s > MAX_STRING then
        return '"' .. shown .. '"...(' .. #s .. " bytes)"
    end
    return '"' .. shown .. '"'
end

local function is_identifier(k)
    return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil
end

local type_rank = { number = 1, string = 2, boolean = 3 }

-- Total order on keys of mixed types, so output is deterministic.
local function key_less(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then
        local ra, rb = type_rank[ta] or 4, type_rank[tb] or 4
        if ra ~= rb then return ra < rb end
        return ta < tb
    end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
end

local function sorted_keys(t)
    local keys = {}
    local k = next(t)
    while k ~= nil do
        keys[#keys + 1] = k
        k = next(t, k)
    end
    table.sort(keys, key_less)
    return keys
end

local repr

local function repr_number(n)
    local s = tostring(n)
    -- tostring uses %.14g: make 0.1 + 0.2 visibly differ from 0.3.
    if math.type(n) == "float" and tonumber(s) ~= n and n == n then
        s = string.format("%.17g", n)
    end
    return s
end

local function repr_table(t, depth, seen)
    if seen[t] then return "<cycle>" end
    if depth >= MAX_DEPTH then return "{...}" end
    seen[t] = true
    local parts, shown = {}, 0
    local n = 0
    while rawget(t, n + 1) ~= nil do n = n + 1 end
    local keys = sorted_keys(t)
    local total = #keys
    for i = 1, n do
        if shown >= MAX_ITEMS then break end
        parts[#parts + 1] = repr(rawget(t, i), depth + 1, seen)
        shown = shown + 1
    end
    for _, k in ipairs(keys) do
        if shown >= MAX_ITEMS then break end
        if not (math.type(k) == "integer" and k >= 1 and k <= n) then
            local ks = is_identifier(k) and k
                or "[" .. repr(k, MAX_DEPTH, seen) .. "]"
            parts[#parts + 1] = ks .. " = " .. repr(rawget(t, k), depth + 1, seen)
            shown = shown + 1
        end
    end
    if total > shown then
        parts[#parts + 1] = "...(" .. (total - shown) .. " more)"
    end
    seen[t] = nil   -- a table shared (not cyclic) is shown at each place
    return "{" .. table.concat(parts, ", ") .. "}"
end

function repr(v, depth, seen)
    local tv = type(v)
    if tv == "string" then return quote(v) end
    if tv == "number" then return repr_number(v) end
    if tv == "table" then return repr_table(v, depth or 0, seen or {}) end
    if json_null ~= nil and rawequal(v, json_null) then return "json.null" end
    local ok, s = pcall(tostring, v)
    return ok and type(s) == "string" and s or "<" .. tv .. ">"
end
M.repr = repr

local function error_text(e)
    if type(e) == "string" then return e end
    return repr(e)
end

---------------------------------------------------------------------------
-- Deep equality with a readable difference list.  Metatables are ignored:
-- a decoded JSON array (json.array_mt) equals a plain table with the same
-- elements.
---------------------------------------------------------------------------

local function path_of(path, k)
    if is_identifier(k) then return path .. "." .. k end
    return path .. "[" .. repr(k, MAX_DEPTH) .. "]"
end

local function scalar_equal(a, b)
    return rawequal(a, b) or (a ~= a and b ~= b)   -- NaN equals NaN here
end

local function add_diff(acc, line)
    acc.count = acc.count + 1
    if #acc <= MAX_DIFFS then acc[#acc + 1] = line end
end

local function diff_into(expected, actual, path, acc, seen)
    if type(expected) ~= "table" or type(actual) ~= "table" then
        if not scalar_equal(expected, actual) then
            add_diff(acc, path .. ": expected " .. repr(expected) .. ", got " .. repr(actual))
        end
        return
    end
    if rawequal(expected, actual) then return end
    -- Cyclic structures: a pair already being compared is assumed equal.
    seen[expected] = seen[expected] or {}
    if seen[expected][actual] then return end
    seen[expected][actual] = true
    -- One pass over the union of keys, in order, so paths read sorted.
    local keys = sorted_keys(expected)
    for _, k in ipairs(sorted_keys(actual)) do
        if rawget(expected, k) == nil then keys[#keys + 1] = k end
    end
    table.sort(keys, key_less)
    for _, k in ipairs(keys) do
        local e, a = rawget(expected, k), rawget(actual, k)
        if a == nil then
            add_diff(acc, path_of(path, k) .. ": missing (expected " .. repr(e) .. ")")
        elseif e == nil then
            add_diff(acc, path_of(path, k) .. ": unexpected key (got " .. repr(a) .. ")")
        else
            diff_into(e, a, path_of(path, k), acc, seen)
        end
    end
end

-- Returns the list of difference lines (empty when deep-equal); .count is
-- the total, which may exceed the lines kept.
function M.diff(expected, actual)
    local acc = { count = 0 }
    diff_into(expected, actual, "$", acc, {})
    return acc
end

function M.deep_equal(a, b)
    return M.diff(a, b).count == 0
end

local function same_message(expected, actual, d)
    if type(expected) ~= "table" or type(actual) ~= "table" then
        return "expected " .. repr(expected) .. ", got " .. repr(actual)
    end
    local lines = { "tables differ (" .. d.count .. " difference"
                    .. (d.count == 1 and "" or "s") .. "):" }
    for i = 1, #d do lines[#lines + 1] = "  " .. d[i] end
    if d.count > #d then lines[#lines + 1] = "  ...(" .. (d.count - #d) .. " more)" end
    return table.concat(lines, "\n")
end

---------------------------------------------------------------------------
-- Matchers: matcher(actual, ...) -> pass, message, negated_message.
-- pass == nil means misuse (wrong argument type): always a failure.
---------------------------------------------------------------------------

local matchers = {}

function matchers.to_equal(actual, expected)
    local msg = "expected " .. repr(expected) .. ", got " .. repr(actual)
    if type(actual) == "table" and type(expected) == "table"
            and not rawequal(actual, expected) and M.deep_equal(expected, actual) then
        msg = msg .. " (same contents, different tables: use to_same)"
    end
    return actual == expected, msg, "expected a value other than " .. repr(expected)
end
matchers.to_be = matchers.to_equal

function matchers.to_same(actual, expected)
    local d = M.diff(expected, actual)
    return d.count == 0, same_message(expected, actual, d),
        "expected a value not deep-equal to " .. repr(expected)
end

function matchers.to_be_truthy(actual)
    return not not actual, "expected a truthy value, got " .. repr(actual),
        "expected a falsy value, got " .. repr(actual)
end

function matchers.to_be_falsy(actual)
    return not actual, "expected a falsy value, got " .. repr(actual),
        "expected a truthy value, got " .. repr(actual)
end

function matchers.to_be_nil(actual)
    return actual == nil, "expected nil, got " .. repr(actual), "expected a non-nil value"
end

function matchers.to_match(actual, pattern)
    if type(actual) ~= "string" or type(pattern) ~= "string" then
        return nil, "to_match: expected a string and a pattern, got "
            .. repr(actual) .. " and " .. repr(pattern)
    end
    local ok, found = pcall(string.find, actual, pattern)
    if not ok then return nil, "to_match: bad pattern " .. repr(pattern) .. ": " .. error_text(found) end
    return found ~= nil, "expected " .. repr(actual) .. " to match " .. repr(pattern),
        "expected " .. repr(actual) .. " not to match " .. repr(pattern)
end

function matchers.to_contain(actual, item)
    local found
    if type(actual) == "string" and type(item) == "string" then
        found = actual:find(item, 1, true) ~= nil
    elseif type(actual) == "table" then
        found = false
        for i = 1, #actual do
            if M.deep_equal(item, rawget(actual, i)) then found = true break end
        end
    else
        return nil, "to_contain: expected a string or an array, got " .. repr(actual)
    end
    return found, "expected " .. repr(actual) .. " to contain " .. repr(item),
        "expected " .. repr(actual) .. " not to contain " .. repr(item)
end

-- Calls fn; yields inside it (http, task) are fine: pcall is yieldable.
local function check_fails(fn, substring)
    if type(fn) ~= "function" then
        return nil, "expected a function, got " .. repr(fn)
    end
    local ok, err = pcall(fn)
    if ok then return false, "expected the function to fail, but it returned normally" end
    local text = error_text(err)
    if substring ~= nil and not text:find(tostring(substring), 1, true) then
        return false, "expected an error containing " .. repr(tostring(substring))
            .. ", got " .. repr(text)
    end
    return true, nil, "expected the function not to fail, but it raised " .. repr(text)
end
matchers.to_fail = check_fails

-- expect(actual).matcher(...) / expect(actual).never.matcher(...).
-- The closure raises at level 2, i.e. at the line of the spec that called
-- it -- keep those calls out of tail position so the level stays right.
local function expectation(actual, negated)
    return setmetatable({}, { __index = function(_, name)
        if name == "never" or name == "not_" then
            return expectation(actual, not negated)
        end
        local matcher = matchers[name]
        if not matcher then
            error("expect: unknown matcher '" .. tostring(name) .. "'", 2)
        end
        return function(...)
            local pass, msg, negated_msg = matcher(actual, ...)
            if pass == nil then error(msg, 2) end
            if pass == negated then error(negated and negated_msg or msg, 2) end
        end
    end })
end

function M.expect(actual)
    return expectation(actual, false)
end

---------------------------------------------------------------------------
-- assert: busted argument order (expected first), callable like the
-- standard assert.
---------------------------------------------------------------------------

-- Raises at level 3: the spec line that called the assert.* function.
local function check(pass, msg, context)
    if pass then return end
    if context ~= nil then msg = tostring(context) .. ": " .. msg end
    error(msg, 3)
end

local asserts = {}

function asserts.equals(expected, actual, context)
    local pass, msg = matchers.to_equal(actual, expected)
    check(pass, msg, context)
end
asserts.equal = asserts.equals

function asserts.same(expected, actual, context)
    local pass, msg = matchers.to_same(actual, expected)
    check(pass, msg, context)
end

function asserts.is_true(v, context)
    check(v == true, "expected true, got " .. repr(v), context)
end

function asserts.is_false(v, context)
    check(v == false, "expected false, got " .. repr(v), context)
end

function asserts.is_nil(v, context)
    check(v == nil, "expected nil, got " .. repr(v), context)
end

function asserts.is_not_nil(v, context)
    check(v ~= nil, "expected a non-nil value", context)
end

function asserts.truthy(v, context)
    check(v, "expected a truthy value, got " .. repr(v), context)
end

function asserts.falsy(v, context)
    check(not v, "expected a falsy value, got " .. repr(v), context)
end

function asserts.has_error(fn, substring, context)
    local pass, msg = check_fails(fn, substring)
    check(pass, msg, context)
end

function asserts.matches(pattern, s, context)
    local pass, msg = matchers.to_match(s, pattern)
    check(pass, msg, context)
end

function asserts.near(expected, actual, eps, context)
    if type(expected) ~= "number" or type(actual) ~= "number" or type(eps) ~= "number" then
        check(false, "near: expected numbers, got " .. repr(expected) .. ", "
            .. repr(actual) .. ", " .. repr(eps), context)
    end
    check(math.abs(expected - actual) <= eps, "expected " .. repr(actual) .. " to be within "
        .. repr(eps) .. " of " .. repr(expected), context)
end

M.assert = setmetatable(asserts, { __call = function(_, v, msg, ...)
    if not v then error(msg == nil and "assertion failed!" or msg, 2) end
    return v, msg, ...
end })

---------------------------------------------------------------------------
-- Failure capture and reporting.
---------------------------------------------------------------------------

-- Positions ("src:line") of the stack at the error, innermost first,
-- without our own frames.  Called from the xpcall handler: level 1 is
-- pcall, 2 this function, 3 the handler, 4 the function that raised.
local function stack_positions()
    local frames = {}
    for level = 4, 3 + TRACE_LEVELS do
        local _, where = pcall(error, "", level)
        local pos = type(where) == "string" and where:match("^(.*:%d+): $")
        if pos and pos:match("^(.*):%d+$") ~= own_source then
            frames[#frames + 1] = pos
        end
    end
    return frames
end

-- Runs fn(...) protected.  Returns true, or false and the failure.
local function protected(fn, ...)
    local frames
    local function handler(e)
        frames = stack_positions()
        return e
    end
    local ok, err = xpcall(fn, handler, ...)
    if ok then return true end
    return false, { err = err, frames = frames or {} }
end

-- Does the position's source name the spec file?  Long paths are
-- shortened by Lua to "...tail".
local function is_in_file(pos, path)
    local src = pos:match("^(.*):%d+$")
    if not src then return false end
    if src == path then return true end
    return src:sub(1, 3) == "..." and path:sub(-(#src - 3)) == src:sub(4)
end

local function failure_text(failure, path, verbose)
    local msg = error_text(failure.err)
    local lines = { msg }
    for _, pos in ipairs(failure.frames) do
        if is_in_file(pos, path) then
            if msg:sub(1, #pos + 1) ~= pos .. ":" then lines[#lines + 1] = "at " .. pos end
            break
        end
    end
    if verbose and #failure.frames > 0 then
        lines[#lines + 1] = "traceback:"
        for _, pos in ipairs(failure.frames) do lines[#lines + 1] = "  " .. pos end
    end
    return table.concat(lines, "\n")
end

local INDENT = "     "

-- Sends text to out one line at a time, each indented.
local function out_indented(out, text)
    for line in (text .. "\n"):gmatch("(.-)\n") do out(INDENT .. line) end
end

---------------------------------------------------------------------------
-- The runner.
---------------------------------------------------------------------------

local function new_block(name, parent)
    return { name = name, parent = parent, before = {}, after = {},
             setup = {}, teardown = {} }
end

local function block_chain(block)
    local chain = {}
    while block do
        table.insert(chain, 1, block)
        block = block.parent
    end
    return chain
end

local function full_name(block, name)
    local parts = { tostring(name) }
    while block and block.parent do
        table.insert(parts, 1, tostring(block.name))
        block = block.parent
    end
    return table.concat(parts, " > ")
end

-- Runs a list of hooks; returns nil or the first failure's text.
local function run_hooks(hooks, path, verbose)
    for _, fn in ipairs(hooks) do
        local ok, failure = protected(fn)
        if not ok then return failure_text(failure, path, verbose) end
    end
    return nil
end

-- Installs the spec DSL into env; returns the collected root and tests.
local function install(env, state)
    local function collecting(what)
        if state.running then
            error(what .. "() cannot be called while tests run (only at file or describe level)", 3)
        end
    end
    local function hook(kind)
        return function(fn)
            collecting(kind)
            if type(fn) ~= "function" then error(kind .. "(fn): expected a function", 2) end
            local list = state.current[kind == "before_each" and "before"
                or kind == "after_each" and "after" or kind]
            list[#list + 1] = fn
        end
    end
    env.describe = function(name, fn)
        collecting("describe")
        if type(fn) ~= "function" then error("describe(name, fn): expected a function", 2) end
        local parent = state.current
        state.current = new_block(name, parent)
        fn()
        state.current = parent
    end
    env.it = function(name, fn)
        collecting("it")
        if fn ~= nil and type(fn) ~= "function" then error("it(name, fn): expected a function", 2) end
        local tests = state.tests
        tests[#tests + 1] = { name = full_name(state.current, name), fn = fn,
                              block = state.current, pending = fn == nil }
    end
    env.pending = function(name)
        collecting("pending")
        local tests = state.tests
        tests[#tests + 1] = { name = full_name(state.current, name),
                              block = state.current, pending = true }
    end
    env.before_each = hook("before_each")
    env.after_each = hook("after_each")
    env.setup = hook("setup")
    env.teardown = hook("teardown")
    env.expect = M.expect
    env.assert = M.assert
end

-- Runs setup of every block of the chain not yet set up.  Returns the
-- failure text of the first block whose setup failed, if any.
local function ensure_setup(chain, path, verbose)
    for _, b in ipairs(chain) do
        if not b.setup_done then
            b.setup_done = true
            b.setup_error = run_hooks(b.setup, path, verbose)
        end
        if b.setup_error then return "setup failed: " .. b.setup_error end
    end
    return nil
end

local function run_test(t, path, verbose)
    local chain = block_chain(t.block)
    local errors = {}
    local setup_error = ensure_setup(chain, path, verbose)
    if setup_error then return { setup_error } end
    local reached = 0
    for k, b in ipairs(chain) do
        local e = run_hooks(b.before, path, verbose)
        if e then errors[#errors + 1] = "before_each: " .. e break end
        reached = k
    end
    if #errors == 0 then
        local ok, failure = protected(t.fn)
        if not ok then errors[#errors + 1] = failure_text(failure, path, verbose) end
    end
    -- after_each of every block whose before_each ran, innermost first.
    for k = reached, 1, -1 do
        local e = run_hooks(chain[k].after, path, verbose)
        if e then errors[#errors + 1] = "after_each: " .. e end
    end
    return errors
end

-- Teardown of blocks whose last selected test was index i.  Returns the
-- number of teardowns that failed.
local function run_teardowns(t, i, last, out, path, verbose)
    local failed = 0
    local b = t.block
    while b do
        if last[b] == i and b.setup_done and not b.setup_error then
            local e = run_hooks(b.teardown, path, verbose)
            if e then
                failed = failed + 1
                out("FAIL " .. full_name(b.parent, b.name or path) .. " > teardown")
                out_indented(out, e)
            end
        end
        b = b.parent
    end
    return failed
end

-- opts: filter (plain substring of "describe > it"), verbose, output
-- (function receiving each line; default print).
function M.run_file(chunk, env, path, opts)
    opts = opts or {}
    local out = opts.output or print
    local filter = opts.filter ~= "" and opts.filter or nil
    local verbose = opts.verbose
    path = tostring(path)

    local state = { current = new_block(nil, nil), tests = {}, running = false }
    install(env, state)
    local ok, failure = protected(chunk)
    if not ok then
        out("FAIL " .. path)
        out_indented(out, failure_text(failure, path, verbose))
        return 0, 1, 0
    end
    state.running = true

    local selected = {}
    for _, t in ipairs(state.tests) do
        if not filter or t.name:find(filter, 1, true) then selected[#selected + 1] = t end
    end
    local last = {}
    for i, t in ipairs(selected) do
        local b = t.block
        while b do last[b] = i; b = b.parent end
    end

    local passed, failed, pending = 0, 0, 0
    for i, t in ipairs(selected) do
        if t.pending then
            pending = pending + 1
            out("skip " .. t.name)
        else
            local errors = run_test(t, path, verbose)
            if #errors == 0 then
                passed = passed + 1
                out("ok   " .. t.name)
            else
                failed = failed + 1
                out("FAIL " .. t.name)
                out_indented(out, table.concat(errors, "\n"))
            end
        end
        failed = failed + run_teardowns(t, i, last, out, path, verbose)
    end
    if verbose then
        out(string.format("# %s: %d passed, %d failed, %d pending", path, passed, failed, pending))
    end
    return passed, failed, pending
end

return M
