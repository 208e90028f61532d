-- gleam.toplocal: the top-level `local` statements of a chunk, made
-- assignments, so the REPL can keep their variables for later inputs
-- (gleam.repl declares the names as locals around the chunk itself).
--
--   local a, b = 1, 2      ->  a, b = 1, 2
--   local c                ->  c = nil
--   local function f() end ->  function f() end
--
-- "Top level" is outside any function, do, if, while, for and repeat
-- block; a `local` inside one is left alone. A small lexer skips strings,
-- long strings and comments, so a `local` or `end` inside them does not
-- count. The chunk is assumed to compile; the caller compiles the result
-- again and falls back to the original if it does not.
local M = {}

local OPEN = { ["function"] = true, ["if"] = true, ["do"] = true, ["repeat"] = true }
local CLOSE = { ["end"] = true, ["until"] = true }

-- Returns the position after a long bracket ([[, [==[ ...) starting at i,
-- or nil if there is none at i.
local function long_bracket_end(src, i)
  local eqs = src:match("^%[(=*)%[", i)
  if not eqs then return nil end
  local close = "]" .. eqs .. "]"
  local e = src:find(close, i + #eqs + 2, true)
  return e and e + #close or #src + 1
end

-- Returns the tokens of src that matter here: names (keywords included)
-- and operators, each { text, start, stop }; strings, numbers and
-- comments are skipped.
local function tokens(src)
  local list, i, n = {}, 1, #src
  while i <= n do
    local c = src:sub(i, i)
    if c:match("%s") then
      i = i + 1
    elseif src:sub(i, i + 1) == "--" then
      i = long_bracket_end(src, i + 2) or ((src:find("\n", i, true) or n) + 1)
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= n do
        local d = src:sub(j, j)
        if d == "\\" then j = j + 1 elseif d == c or d == "\n" then break end
        j = j + 1
      end
      i = j + 1
    elseif c == "[" and long_bracket_end(src, i) then
      i = long_bracket_end(src, i)
    elseif c:match("[%a_]") then
      local s, e = src:find("^[%a_][%w_]*", i)
      list[#list + 1] = { src:sub(s, e), s, e }
      i = e + 1
    elseif c:match("%d") or (c == "." and src:sub(i + 1, i + 1):match("%d")) then
      local _, e = src:find("^[%w_.]+", i)
      -- an exponent's sign (1e-5) belongs to the number
      while src:sub(e, e):match("[eEpP]") and src:sub(e + 1, e + 1):match("[+-]") do
        _, e = src:find("^[%w_.]+", e + 2)
        e = e or n
      end
      i = e + 1
    else
      local op = src:match("^[=~<>]=", i) or src:match("^%.%.%.?", i) or c
      list[#list + 1] = { op, i, i + #op - 1 }
      i = i + #op
    end
  end
  return list
end

-- Returns src with its top-level locals made assignments, and the list of
-- names they declare (empty when there are none).
function M.rewrite(src)
  local toks = tokens(src)
  local edits, names, depth = {}, {}, 0
  local k = 1
  while k <= #toks do
    local t = toks[k][1]
    if t == "local" and depth == 0 then
      local nxt = toks[k + 1]
      if nxt and nxt[1] == "function" then
        edits[#edits + 1] = { toks[k][2], nxt[2] - 1, "" }
        if toks[k + 2] then names[#names + 1] = toks[k + 2][1] end
      else
        local j = k + 1
        while toks[j] do
          names[#names + 1] = toks[j][1]
          if not (toks[j + 1] and toks[j + 1][1] == ",") then break end
          j = j + 2
        end
        if toks[j + 1] and toks[j + 1][1] == "=" then
          edits[#edits + 1] = { toks[k][2], toks[k + 1][2] - 1, "" }
        elseif toks[j] then
          edits[#edits + 1] = { toks[k][2], toks[k + 1][2] - 1, "" }
          edits[#edits + 1] = { toks[j][3] + 1, toks[j][3], " = nil" }
        end
        k = j
      end
    elseif OPEN[t] then
      depth = depth + 1
    elseif CLOSE[t] then
      depth = depth - 1
    end
    k = k + 1
  end
  for e = #edits, 1, -1 do
    local s, stop, text = edits[e][1], edits[e][2], edits[e][3]
    src = src:sub(1, s - 1) .. text .. src:sub(stop + 1)
  end
  return src, names
end

return M
