-- gleam.codec: msgpack rows in Lua, read and written in place through the
-- FFI. This is the row loop's codec: decode reads a value at a byte offset
-- of a C buffer and returns it with the next offset; an encoder appends to a
-- gl_buf the engine owns. Integers within +-2^53 decode to Lua numbers,
-- larger ones to int64_t (uint64_t above INT64_MAX) cdata; a Lua number
-- with no fraction is written as an integer, any other (and -0.0, inf, nan)
-- as a double. Strings are bytes both ways. A row's field count is explicit
-- (the array header), so trailing nils survive.
local ffi = require "ffi"
local bit = require "bit"
local core = require "gleam.core"

local C = core.C
local ffi_string, ffi_copy, ffi_cast, istype = ffi.string, ffi.copy, ffi.cast, ffi.istype
local band, rshift = bit.band, bit.rshift
local floor = math.floor
local type, pairs, select, error, tonumber = type, pairs, select, error, tonumber

local u8p = ffi.typeof("const uint8_t *")
local int64_t, uint64_t = ffi.typeof("int64_t"), ffi.typeof("uint64_t")
local conv = ffi.new([[union { uint64_t u; int64_t i; double d; float f; uint8_t b[8]; }]])

local TWO53 = 2 ^ 53
local M = {}

-- Decoding ------------------------------------------------------------------

local function be16(p, i) return p[i] * 256 + p[i + 1] end
local function be32(p, i) return ((p[i] * 256 + p[i + 1]) * 256 + p[i + 2]) * 256 + p[i + 3] end

local function load8(p, i)
  conv.b[7] = p[i]; conv.b[6] = p[i + 1]; conv.b[5] = p[i + 2]; conv.b[4] = p[i + 3]
  conv.b[3] = p[i + 4]; conv.b[2] = p[i + 5]; conv.b[1] = p[i + 6]; conv.b[0] = p[i + 7]
end

local function int64_value(v)
  if v >= -TWO53 and v <= TWO53 then return tonumber(v) end
  return v
end

local decode

-- Arrays with nils in them keep their length here, so they are written
-- back as arrays of that length (a Lua table cannot say it). Weak keys: the
-- entry goes with its table.
local array_len = setmetatable({}, { __mode = "k" })

local function decode_array(p, i, n)
  local t = {}
  local holes = false
  for k = 1, n do
    local v
    v, i = decode(p, i)
    if v == nil then holes = true else t[k] = v end
  end
  if holes then array_len[t] = n end
  return t, i
end

local function decode_map(p, i, n)
  local t = {}
  for _ = 1, n do
    local k, v
    k, i = decode(p, i)
    v, i = decode(p, i)
    if k ~= nil then t[k] = v end
  end
  return t, i
end

-- Returns the value at p[i] and the offset after it.
decode = function(p, i)
  local c = p[i]
  if c < 0x80 then return c, i + 1 end
  if c >= 0xe0 then return c - 256, i + 1 end
  if c >= 0xa0 and c < 0xc0 then
    local n = c - 0xa0
    return ffi_string(p + i + 1, n), i + 1 + n
  end
  if c < 0x90 then return decode_map(p, i + 1, c - 0x80) end
  if c < 0xa0 then return decode_array(p, i + 1, c - 0x90) end
  if c == 0xc0 then return nil, i + 1 end
  if c == 0xc2 then return false, i + 1 end
  if c == 0xc3 then return true, i + 1 end
  if c == 0xcb then
    load8(p, i + 1)
    return conv.d, i + 9
  end
  if c == 0xd9 or c == 0xc4 then
    local n = p[i + 1]
    return ffi_string(p + i + 2, n), i + 2 + n
  end
  if c == 0xda or c == 0xc5 then
    local n = be16(p, i + 1)
    return ffi_string(p + i + 3, n), i + 3 + n
  end
  if c == 0xdb or c == 0xc6 then
    local n = be32(p, i + 1)
    return ffi_string(p + i + 5, n), i + 5 + n
  end
  if c == 0xcc then return p[i + 1], i + 2 end
  if c == 0xcd then return be16(p, i + 1), i + 3 end
  if c == 0xce then return be32(p, i + 1), i + 5 end
  if c == 0xcf then
    load8(p, i + 1)
    if conv.u <= 9007199254740992ULL then return tonumber(conv.u), i + 9 end
    if conv.i >= 0 then return conv.i, i + 9 end
    return conv.u, i + 9
  end
  if c == 0xd0 then local v = p[i + 1]; return v >= 128 and v - 256 or v, i + 2 end
  if c == 0xd1 then local v = be16(p, i + 1); return v >= 32768 and v - 65536 or v, i + 3 end
  if c == 0xd2 then local v = be32(p, i + 1); return v >= 2147483648 and v - 4294967296 or v, i + 5 end
  if c == 0xd3 then
    load8(p, i + 1)
    return int64_value(conv.i), i + 9
  end
  if c == 0xca then
    conv.b[3] = p[i + 1]; conv.b[2] = p[i + 2]; conv.b[1] = p[i + 3]; conv.b[0] = p[i + 4]
    return tonumber(conv.f), i + 5
  end
  if c == 0xdc then return decode_array(p, i + 3, be16(p, i + 1)) end
  if c == 0xdd then return decode_array(p, i + 5, be32(p, i + 1)) end
  if c == 0xde then return decode_map(p, i + 3, be16(p, i + 1)) end
  if c == 0xdf then return decode_map(p, i + 5, be32(p, i + 1)) end
  -- ext: kept as its raw bytes, so it survives a round trip through Lua
  local n, h
  if c >= 0xd4 and c <= 0xd8 then n, h = 2 ^ (c - 0xd4), 2
  elseif c == 0xc7 then n, h = p[i + 1], 3
  elseif c == 0xc8 then n, h = be16(p, i + 1), 4
  elseif c == 0xc9 then n, h = be32(p, i + 1), 6
  else error("gleam: malformed msgpack byte " .. c, 0) end
  local handler = M.ext_handlers[p[i + h - 1]]
  if handler then return handler(p + i + h, n), i + h + n end
  return setmetatable({ raw = ffi_string(p + i, h + n) }, M.ext_mt), i + h + n
end

M.ext_mt = { __name = "msgpack ext" }
-- Ext types the decoder hands to a function(payload pointer, length)
-- instead of keeping raw: gleam.worker reserves type 71 for the values of
-- a group too big for memory.
M.ext_handlers = {}

-- The length of an array decoded with nils in it (a table cannot say).
function M.array_length(t)
  return array_len[t] or #t
end

-- The size an ext value's header announces for raw (header included), or nil.
function M.ext_size(raw)
  local c, b = raw:byte(1, 6)
  if not c then return nil end
  local b1, b2, b3, b4, b5 = raw:byte(2, 6)
  if c >= 0xd4 and c <= 0xd8 then return 2 + 2 ^ (c - 0xd4) end
  if c == 0xc7 and b1 then return 3 + b1 end
  if c == 0xc8 and b2 then return 4 + b1 * 256 + b2 end
  if c == 0xc9 and b4 then return 6 + ((b1 * 256 + b2) * 256 + b3) * 256 + b4 end
  return nil
end

-- Returns the field count of the row at p[i] and the offset of field 1.
local function row_header(p, i)
  local c = p[i]
  if c >= 0x90 and c <= 0x9f then return c - 0x90, i + 1 end
  if c == 0xdc then return be16(p, i + 1), i + 3 end
  if c == 0xdd then return be32(p, i + 1), i + 5 end
  error("gleam: a row is not a msgpack array (byte " .. c .. ")", 0)
end

-- Returns the offset after the value at p[i] without making it: a reader
-- that needs only a value's place (a key the engine matches by its bytes)
-- makes no string for it. Values other than scalars and strings are
-- decoded and dropped.
local function skip(p, i)
  local c = p[i]
  if c < 0x80 or c >= 0xe0 or c == 0xc0 or c == 0xc2 or c == 0xc3 then return i + 1 end
  if c >= 0xa0 and c < 0xc0 then return i + 1 + (c - 0xa0) end
  if c == 0xd9 or c == 0xc4 then return i + 2 + p[i + 1] end
  if c == 0xda or c == 0xc5 then return i + 3 + be16(p, i + 1) end
  if c == 0xdb or c == 0xc6 then return i + 5 + be32(p, i + 1) end
  if c == 0xcc or c == 0xd0 then return i + 2 end
  if c == 0xcd or c == 0xd1 then return i + 3 end
  if c == 0xce or c == 0xd2 or c == 0xca then return i + 5 end
  if c == 0xcf or c == 0xd3 or c == 0xcb then return i + 9 end
  local _, j = decode(p, i)
  return j
end

M.decode = decode
M.skip = skip
M.row_header = row_header
M.u8p = u8p

-- Returns the value encoded in string s (one value).
function M.unpack(s)
  local p = ffi_cast(u8p, s)
  return (decode(p, 0))
end

-- Encoding -------------------------------------------------------------------

-- Map keys in the engine's order: booleans, numbers, strings, then other
-- values by their encoding.
local key_rank = { boolean = 1, number = 2, cdata = 2, string = 3 }
local key_lt
local function encoded(v)
  local b = M.new_buf()
  local e = M.encoder(b)
  e.begin()
  e.value(v)
  e.commit()
  return ffi_string(b.data, b.len)
end
key_lt = function(a, b)
  local ta, tb = type(a), type(b)
  local ra, rb = key_rank[ta] or 4, key_rank[tb] or 4
  if ta == "cdata" and not M.is_int64(a) then ra = 4 end
  if tb == "cdata" and not M.is_int64(b) then rb = 4 end
  if ra ~= rb then return ra < rb end
  if ra == 1 then return (not a) and b end
  if ra == 2 or ra == 3 then return a < b end
  return encoded(a) < encoded(b)
end

-- An encoder appends to a gl_buf. Between begin() and commit() it keeps the
-- write position in a Lua number, so the row loop does no 64-bit cdata
-- arithmetic on the buffer's own fields.
function M.encoder(buf)
  local data, pos, cap = nil, 0, 0

  local function begin()
    data = buf.data
    pos = tonumber(buf.len)
    cap = tonumber(buf.cap)
  end

  local function commit()
    buf.len = pos
  end

  local function need(k)
    if pos + k > cap then
      buf.len = pos
      if C.gl_buf_grow(buf, k) ~= 0 then error("gleam: out of memory", 0) end
      data = buf.data
      cap = tonumber(buf.cap)
    end
  end

  local function put8(c)
    data[pos] = c
    pos = pos + 1
  end

  local function put16(v)
    data[pos] = rshift(v, 8); data[pos + 1] = band(v, 0xff)
    pos = pos + 2
  end

  local function put32(v)
    data[pos] = band(rshift(v, 24), 0xff); data[pos + 1] = band(rshift(v, 16), 0xff)
    data[pos + 2] = band(rshift(v, 8), 0xff); data[pos + 3] = band(v, 0xff)
    pos = pos + 4
  end

  local function put_conv8(tag)
    data[pos] = tag
    data[pos + 1] = conv.b[7]; data[pos + 2] = conv.b[6]; data[pos + 3] = conv.b[5]; data[pos + 4] = conv.b[4]
    data[pos + 5] = conv.b[3]; data[pos + 6] = conv.b[2]; data[pos + 7] = conv.b[1]; data[pos + 8] = conv.b[0]
    pos = pos + 9
  end

  local function put_double(v)
    need(9)
    conv.d = v
    put_conv8(0xcb)
  end

  -- v: a Lua number with no fraction, |v| < 2^63
  local function put_int(v)
    need(9)
    if v >= 0 then
      if v < 128 then put8(v)
      elseif v < 256 then put8(0xcc); put8(v)
      elseif v < 65536 then put8(0xcd); put16(v)
      elseif v < 4294967296 then put8(0xce); put32(v)
      else conv.i = v; put_conv8(0xcf) end
    else
      if v >= -32 then put8(v + 256)
      elseif v >= -128 then put8(0xd0); put8(v + 256)
      elseif v >= -32768 then put8(0xd1); put16(v + 65536)
      elseif v >= -2147483648 then put8(0xd2); put32(v + 4294967296)
      else conv.i = v; put_conv8(0xd3) end
    end
  end

  local function put_int64(v)
    need(9)
    if istype(uint64_t, v) then
      conv.u = v
      if conv.i < 0 then put_conv8(0xcf); return end
    else
      conv.i = v
    end
    local i = conv.i
    if i >= -TWO53 and i <= TWO53 then return put_int(tonumber(i)) end
    put_conv8(i >= 0 and 0xcf or 0xd3)
  end

  local function put_str(s)
    local n = #s
    need(n + 5)
    if n < 32 then put8(0xa0 + n)
    elseif n < 256 then put8(0xd9); put8(n)
    elseif n < 65536 then put8(0xda); put16(n)
    else put8(0xdb); put32(n) end
    ffi_copy(data + pos, s, n)
    pos = pos + n
  end

  local function put_header(n, fix, c16)
    need(5)
    if n < 16 then put8(fix + n)
    elseif n < 65536 then put8(c16); put16(n)
    else put8(c16 + 1); put32(n) end
  end

  local put_value

  local function put_table(t, depth)
    if depth > 100 then error("gleam: cannot encode a table nested over 100 deep (is it cyclic?)", 0) end
    local mt = getmetatable(t)
    if mt == M.ext_mt then
      -- Raw bytes go into a row as they are: they must be exactly one ext
      -- value, or later readers would walk off them.
      local raw = t.raw
      if type(raw) ~= "string" or M.ext_size(raw) ~= #raw then
        error("gleam: cannot store a malformed msgpack ext value", 0)
      end
      need(#raw)
      ffi_copy(data + pos, raw, #raw)
      pos = pos + #raw
      return
    end
    local n, max = 0, 0
    for k in pairs(t) do
      n = n + 1
      if max >= 0 and type(k) == "number" and k >= 1 and k == floor(k) then
        if k > max then max = k end
      else
        max = -1
      end
    end
    local len = array_len[t]
    if len and max >= 0 and max <= len then
      -- an array that came with nils in it, still only its own items
      put_header(len, 0x90, 0xdc)
      for k = 1, len do put_value(t[k], depth + 1) end
    elseif max == n then
      put_header(n, 0x90, 0xdc)
      for k = 1, n do put_value(t[k], depth + 1) end
    else
      -- Entries in key order, so equal maps are equal bytes and keys
      -- (joins, distinct, grouping) match whatever order pairs() gave.
      local keys = {}
      for k in pairs(t) do keys[#keys + 1] = k end
      table.sort(keys, key_lt)
      put_header(n, 0x80, 0xde)
      for i = 1, n do
        local k = keys[i]
        put_value(k, depth + 1)
        put_value(t[k], depth + 1)
      end
    end
  end

  put_value = function(v, depth)
    local tv = type(v)
    if tv == "string" then return put_str(v) end
    if tv == "number" then
      if v == floor(v) and v >= -9223372036854775808 and v < 9223372036854775808
          and (v ~= 0 or 1 / v > 0) then
        return put_int(v)
      end
      return put_double(v)
    end
    if tv == "nil" then need(1); return put8(0xc0) end
    if tv == "boolean" then need(1); return put8(v and 0xc3 or 0xc2) end
    if tv == "table" then return put_table(v, depth or 0) end
    if tv == "cdata" and (istype(int64_t, v) or istype(uint64_t, v)) then return put_int64(v) end
    error("gleam: cannot store a " .. tv .. " in a row", 0)
  end

  -- Appends a row of n fields: a, b, c, d, then the rest.
  local function put_row(n, a, b, c, d, ...)
    put_header(n, 0x90, 0xdc)
    if n == 0 then return end
    put_value(a)
    if n == 1 then return end
    put_value(b)
    if n == 2 then return end
    put_value(c)
    if n == 3 then return end
    put_value(d)
    for k = 1, n - 4 do put_value((select(k, ...))) end
  end

  -- Appends n raw bytes.
  local function put_raw(p, n)
    need(n)
    ffi_copy(data + pos, p, n)
    pos = pos + n
  end

  return {
    begin = begin, commit = commit, value = put_value, row = put_row,
    header = function(n) put_header(n, 0x90, 0xdc) end, raw = put_raw,
  }
end

-- A scratch gl_buf for pack(), owned by Lua and freed by its finalizer.
local function new_buf()
  local b = ffi.new("gl_buf")
  return ffi.gc(b, function(x) ffi.C.free(x.data) end)
end
pcall(ffi.cdef, "void free(void *);")
M.new_buf = new_buf

local pack_buf = new_buf()
local pack_enc = M.encoder(pack_buf)

-- Returns the msgpack encoding of v as a string.
function M.pack(v)
  pack_buf.len = 0
  pack_enc.begin()
  pack_enc.value(v)
  pack_enc.commit()
  return ffi_string(pack_buf.data, pack_buf.len)
end

-- Returns the encoding of a row of n fields (n defaults to select('#', ...)).
function M.pack_row(...)
  pack_buf.len = 0
  pack_enc.begin()
  pack_enc.row(select("#", ...), ...)
  pack_enc.commit()
  return ffi_string(pack_buf.data, pack_buf.len)
end

-- Returns the row at p[i] as a table { f1, ..., n = count }, and the offset after it.
local function row_at(p, i)
  local n
  n, i = row_header(p, i)
  local r = { n = n }
  for k = 1, n do r[k], i = decode(p, i) end
  return r, i
end
M.row_at = row_at

-- Appends the nrows rows of a batch to out as row tables.
function M.rows_of(p, nrows, out)
  local i = 0
  for _ = 1, nrows do
    local r
    r, i = row_at(p, i)
    out[#out + 1] = r
  end
  return out
end

local function show_value(v, depth)
  local tv = type(v)
  if tv == "string" then
    return '"' .. v:gsub('[%c"\\\128-\255]', function(c)
      if c == '"' or c == "\\" then return "\\" .. c end
      if c == "\n" then return "\\n" end
      if c == "\t" then return "\\t" end
      return string.format("\\%03d", c:byte())
    end) .. '"'
  end
  if tv == "table" and depth < 3 then
    local parts = {}
    for k, x in pairs(v) do
      parts[#parts + 1] = "[" .. show_value(k, depth + 1) .. "] = " .. show_value(x, depth + 1)
      if #parts > 8 then parts[#parts + 1] = "..."; break end
    end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return tostring(v)
end

-- Renders a row table { n = ... } as ("a", 1, nil), cut past ~200 bytes.
function M.show_row(r)
  local parts = {}
  for k = 1, r.n or #r do parts[k] = show_value(r[k], 0) end
  local s = "(" .. table.concat(parts, ", ") .. ")"
  if #s > 200 then s = s:sub(1, 197) .. "..." end
  return s
end

M.int64_t, M.uint64_t = int64_t, uint64_t
function M.is_int64(v) return istype(int64_t, v) or istype(uint64_t, v) end
return M
