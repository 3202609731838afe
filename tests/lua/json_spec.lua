-- weir.json through the sandbox: mapping, numbers, null, errors, options.
local json = require "weir.json"

local function roundtrip(text)
  return json.encode(json.decode(text), { sort_keys = true })
end

describe("json.decode / json.encode round trips", function()
  it("keeps empty arrays and objects apart, nested too", function()
    for _, text in ipairs{ "[]", "{}", "[[],{},[[]],[{}]]",
                           '{"a":[],"b":{},"c":{"d":[[],{}]}}' } do
      assert.equals(text, roundtrip(text))
    end
    expect(getmetatable(json.decode("[]"))).to_equal(json.array_mt)
    expect(getmetatable(json.decode("{}"))).to_be_nil()
  end)

  it("keeps integers as integers, including int64 limits", function()
    local v = json.decode("[9007199254740993, 9223372036854775807, -9223372036854775808]")
    assert.equals("integer", math.type(v[1]))
    assert.equals(9007199254740993, v[1])
    assert.equals(math.maxinteger, v[2])
    assert.equals(math.mininteger, v[3])
    assert.equals("[9007199254740993,9223372036854775807,-9223372036854775808]", json.encode(v))
  end)

  it("turns integers too big for int64 into floats", function()
    local big = json.decode("9223372036854775808")
    assert.equals("float", math.type(big))
    assert.equals(2^63, big)
  end)

  it("keeps floats floats, exactly", function()
    assert.equals("0.1", json.encode(0.1))
    assert.equals("1.0", json.encode(1.0))
    assert.equals("1e+300", json.encode(1e300))
    assert.equals("-0.0", json.encode(-0.0))
    assert.equals("0.30000000000000004", json.encode(0.1 + 0.2))
    for _, x in ipairs{ 0.1, 1.0, 1e300, 1/3, 5e-324, 1.7976931348623157e308, 2^63 } do
      local back = json.decode(json.encode(x))
      assert.equals("float", math.type(back))
      assert.equals(x, back)
    end
    assert.equals(-math.huge, 1 / json.decode(json.encode(-0.0)))
    assert.equals("float", math.type(json.decode("1.5")))
    assert.equals("float", math.type(json.decode("1e3")))
  end)

  it("decodes unicode escapes, surrogate pairs included", function()
    assert.equals("\u{e9}", json.decode('"\\u00e9"'))
    assert.equals("\u{1F600}", json.decode('"\\ud83d\\ude00"'))
    assert.equals('"\u{e9}\u{1F600}"', json.encode("\u{e9}\u{1F600}"))
    assert.equals('"a\\"b\\\\c\\n\\u0001"', json.encode('a"b\\c\n\1'))
  end)

  it("represents null as json.null, in arrays and objects", function()
    local a = json.decode("[null, 1, null]")
    assert.equals(3, #a)
    assert.equals(json.null, a[1])
    assert.is_true(json.is_null(a[3]))
    assert.is_false(json.is_null(a[2]))
    assert.equals("[null,1,null]", json.encode(a))
    local o = json.decode('{"a": null}')
    assert.equals(json.null, o.a)
    assert.equals('{"a":null}', json.encode(o))
    assert.equals("null", json.encode(nil))
  end)

  it("deep-compares decoded values with plain tables", function()
    assert.same({ id = 7, tags = { "x", "y" }, meta = {} },
                json.decode('{"id": 7, "tags": ["x", "y"], "meta": {}}'))
  end)
end)

describe("json.encode tables", function()
  it("treats exactly 1..n as an array and other keys as an object", function()
    assert.equals("[1,2,3]", json.encode({ 1, 2, 3 }))
    assert.equals("{}", json.encode({}))
    assert.equals("[]", json.encode(json.array()))
    assert.equals('{"1":1,"3":3}', json.encode({ [1] = 1, [3] = 3 }, { sort_keys = true }))
    assert.equals('{"1":"x","k":"v"}', json.encode({ "x", k = "v" }, { sort_keys = true }))
    assert.equals("[1,null,3]", json.encode(json.array({ 1, nil, 3 })))
  end)

  it("marks tables with json.array", function()
    local t = {}
    assert.equals(t, json.array(t))
    assert.equals(json.array_mt, getmetatable(t))
    assert.has_error(function() json.array(setmetatable({}, {})) end, "already has a metatable")
  end)

  it("keeps the shared array metatable read-only", function()
    assert.has_error(function() getmetatable(json.decode("[]")).__index = print end, "read-only")
    assert.has_error(function() json.array_mt.x = 1 end, "read-only")
    assert.is_nil(json.decode("[1]").x)
  end)

  it("sorts keys bytewise with sort_keys", function()
    local t = { b = 1, a = 2, B = 3, ab = 4, [10] = 5, [9] = 6 }
    assert.equals('{"10":5,"9":6,"B":3,"a":2,"ab":4,"b":1}', json.encode(t, { sort_keys = true }))
  end)

  it("indents with pretty", function()
    local text = json.encode({ a = 1, b = { true } }, { pretty = true, sort_keys = true })
    assert.equals('{\n  "a": 1,\n  "b": [\n    true\n  ]\n}', text)
  end)
end)

describe("json errors", function()
  it("name line, column and byte of malformed input", function()
    assert.has_error(function() json.decode('{"a": 1,\n "b" 2}') end,
                     "json.decode: parse error at line 2, column")
    assert.has_error(function() json.decode('{"a":1, 3}') end,
                     "line 1, column 10 (byte 9): invalid object key")
    assert.has_error(function() json.decode("[1] x") end, "trailing garbage")
    assert.has_error(function() json.decode("") end, "premature EOF")
    assert.has_error(function() json.decode('"\255"') end, "UTF8")
  end)

  it("name the path of what cannot be encoded", function()
    assert.has_error(function() json.encode({ a = { 1, { [true] = 1 } } }) end,
                     "json.encode: cannot encode boolean key at $.a[2]")
    assert.has_error(function() json.encode({ f = print }) end, "cannot encode function at $.f")
    assert.has_error(function() json.encode({ x = 0/0 }) end, "cannot encode NaN at $.x")
    assert.has_error(function() json.encode({ x = math.huge }) end, "cannot encode inf at $.x")
    assert.has_error(function() json.encode({ s = "\255" }) end, "invalid UTF-8 in string at $.s")
    local t = {}
    t.me = t
    assert.has_error(function() json.encode(t) end, "table cycle")
  end)

  it("limit nesting to 1000 levels", function()
    local ok = string.rep("[", 1000) .. string.rep("]", 1000)
    assert.equals(ok, json.encode(json.decode(ok)))
    assert.has_error(function() json.decode("[" .. ok .. "]") end, "nesting deeper than 1000 levels")
    local t = json.decode(ok)
    assert.has_error(function() json.encode({ t }) end, "nesting deeper than 1000 levels")
  end)

  it("reject unknown options", function()
    assert.has_error(function() json.encode({}, { sortkeys = true }) end, "unknown option 'sortkeys'")
  end)
end)
