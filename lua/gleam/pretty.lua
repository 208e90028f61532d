-- gleam.pretty: values as people read them, for the REPL and ds:show().
--
-- value(v) is one Lua-like expression: strings quoted (control bytes
-- escaped, UTF-8 left as it is), tables nested with their array part
-- first and then the other keys sorted, a row table { f1, ..., n = k }
-- written as its k fields (nils included, n left out), a table met again
-- on the way down written as <cycle>. A table too long for one line goes
-- one entry per line; past MAX_ITEMS entries the rest is counted, not
-- written, so printing a large collect() stays readable.
-- rows(list, n) is an aligned text table of row tables.
local ffi = require "ffi"

local M = {}

local MAX_ITEMS = 100   -- entries written per table
local MAX_DEPTH = 8     -- nesting written before "{...}"
local WIDTH = 78        -- a table longer than this goes one entry per line
local CELL = 40         -- widest cell in rows()

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil
  not or repeat return then true until while]]):gmatch("%a+") do KEYWORDS[w] = true end

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' or c == "\\" then return "\\" .. c end
    if c == "\n" then return "\\n" end
    if c == "\t" then return "\\t" end
    if c == "\r" then return "\\r" end
    return string.format("\\%03d", c:byte())
  end) .. '"'
end
M.quote = quote

local function scalar(v)
  local tv = type(v)
  if tv == "string" then return quote(v) end
  if tv == "number" then
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
    return string.format("%.17g", v)
  end
  if tv == "cdata" then
    local ok, s = pcall(tostring, v)
    return ok and s or "cdata<" .. tostring(ffi.typeof(v)) .. ">"
  end
  return tostring(v)
end

-- The number of array entries to write: a row's n, else #t.
local function array_len(t)
  local n = rawget(t, "n")
  if type(n) == "number" and n >= 0 and n == math.floor(n) and n >= #t then
    for k in pairs(t) do
      if k ~= "n" and not (type(k) == "number" and k >= 1 and k <= n and k == math.floor(k)) then
        return #t, false
      end
    end
    return n, true
  end
  return #t, false
end

local function key_text(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") and not KEYWORDS[k] then return k end
  return "[" .. scalar(k) .. "]"
end

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local render

-- Returns the entries of t as text, and how many were left out.
local function entries(t, depth, seen, indent)
  local n, is_row = array_len(t)
  local parts, total = {}, 0
  for i = 1, n do
    total = total + 1
    if #parts < MAX_ITEMS then parts[#parts + 1] = render(t[i], depth + 1, seen, indent) end
  end
  local keys = {}
  for k in pairs(t) do
    local in_array = type(k) == "number" and k >= 1 and k <= n and k == math.floor(k)
    if not in_array and not (is_row and k == "n") then keys[#keys + 1] = k end
  end
  table.sort(keys, key_less)
  for _, k in ipairs(keys) do
    total = total + 1
    if #parts < MAX_ITEMS then
      parts[#parts + 1] = key_text(k) .. " = " .. render(t[k], depth + 1, seen, indent)
    end
  end
  return parts, total - #parts
end

render = function(v, depth, seen, indent)
  if type(v) ~= "table" then return scalar(v) end
  if seen[v] then return "<cycle>" end
  if depth >= MAX_DEPTH then return "{...}" end
  local mt = getmetatable(v)
  if mt and rawget(mt, "__tostring") then return tostring(v) end
  seen[v] = true
  local inner = indent .. "  "
  local parts, more = entries(v, depth, seen, inner)
  seen[v] = nil
  if more > 0 then parts[#parts + 1] = string.format("... (%d more)", more) end
  if #parts == 0 then return "{}" end
  local one = "{ " .. table.concat(parts, ", ") .. " }"
  if #one + #indent <= WIDTH and not one:find("\n", 1, true) then return one end
  return "{\n" .. inner .. table.concat(parts, ",\n" .. inner) .. "\n" .. indent .. "}"
end

-- Returns v as readable text (see the top of this file).
function M.value(v)
  return render(v, 0, {}, "")
end

local function cell(v)
  local s
  if type(v) == "string" then
    s = v:gsub("%c", function(c) return c == "\t" and "\\t" or c == "\n" and "\\n" or "?" end)
  else
    s = M.value(v):gsub("\n%s*", " ")
  end
  if #s > CELL then s = s:sub(1, CELL - 3) .. "..." end
  return s
end

-- Returns rows (row tables) as an aligned table, one line per row under a
-- header of field numbers, and a last line counting them. Numbers are
-- right-aligned. `limit` (optional) was the most asked for: a table that
-- reached it says "first N rows".
function M.rows(rows, limit)
  local width, cells, numeric = {}, {}, {}
  local nf = 0
  for _, r in ipairs(rows) do nf = math.max(nf, r.n or #r) end
  for f = 1, nf do
    width[f] = #tostring(f)
    numeric[f] = true
  end
  for i, r in ipairs(rows) do
    local line = {}
    for f = 1, nf do
      local v = r[f]
      -- a field past the row's end is blank; a nil inside it says nil
      local s = f > (r.n or #r) and "" or cell(v)
      line[f] = s
      if #s > width[f] then width[f] = #s end
      if v ~= nil and type(v) ~= "number" and not (type(v) == "cdata") then numeric[f] = false end
    end
    cells[i] = line
  end
  local function fmt(line)
    local out = {}
    for f = 1, nf do
      local pad = string.rep(" ", width[f] - #line[f])
      out[f] = numeric[f] and pad .. line[f] or line[f] .. pad
    end
    return (table.concat(out, "  "):gsub("%s+$", ""))
  end
  local out = {}
  if nf > 0 then
    local head, rule = {}, {}
    for f = 1, nf do
      head[f] = tostring(f)
      rule[f] = string.rep("-", width[f])
    end
    out[#out + 1] = fmt(head)
    out[#out + 1] = table.concat(rule, "  ")
    for _, line in ipairs(cells) do out[#out + 1] = fmt(line) end
  end
  local n = #rows
  if limit and n >= limit and n > 0 then
    out[#out + 1] = string.format("(first %d row%s)", n, n == 1 and "" or "s")
  else
    out[#out + 1] = string.format("(%d row%s)", n, n == 1 and "" or "s")
  end
  return table.concat(out, "\n") .. "\n"
end

return M
