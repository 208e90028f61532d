-- The README's "Embedding in C" commands, run as they are written: install
-- the library, build examples/host/host.c with pkg-config, run it. Its
-- output must be the CLI's word count of the same files.
local build = os.getenv("GLEAM_BUILD_DIR")
local src = os.getenv("GLEAM_SOURCE_DIR") or "."
local bin = os.getenv("GLEAM_BIN")

local sh = require("helpers").sh

-- The shell block after the README's marker for this spec.
-- (busted's assert returns nothing, hence the explicit errors)
local function readme_block()
  local f = io.open(src .. "/README.md")
  local text = f:read("*a")
  f:close()
  local at = text:find("<!-- test: spec/host_spec.lua runs this block -->", 1, true)
  if not at then error("no marker for this spec in README.md") end
  local body = text:match("```sh\n(.-)```", at)
  if not body then error("no sh block after the marker in README.md") end
  return body
end

describe("the README's C embedding commands", function()
  local dir

  setup(function()
    -- A checkout as the README assumes it: build/, examples/, README.md.
    dir = sh("mktemp -d"):gsub("%s+$", "")
    assert(sh(string.format("mkdir '%s/home' && ln -s '%s' '%s/build' && ln -s '%s/examples' '%s/examples'"
      .. " && ln -s '%s/README.md' '%s/README.md'", dir, build, dir, src, dir, src, dir)))
  end)

  teardown(function() sh("rm -rf '" .. dir .. "'") end)

  it("install, build the host against the installed library, and match gleam run", function()
    local script = dir .. "/readme.sh"
    local f = assert(io.open(script, "w"))
    f:write("set -e\n", readme_block())
    f:close()
    local got, ok = sh(string.format("cd '%s' && env -u LUA_PATH -u LUA_CPATH HOME='%s/home' sh '%s'",
      dir, dir, script))
    assert.is_true(ok, got)
    local want, ok2 = sh(string.format("cd '%s' && '%s' run examples/wordcount.lua README.md examples/*.lua", dir, bin))
    assert.is_true(ok2, want)
    -- The block's output is cmake's install log, then the host's rows.
    assert.are.equal(10, select(2, want:gsub("\n", "\n")))
    assert.are.equal(want, got:sub(-#want))
  end)

  it("reports a missing input as one line and a non-zero exit", function()
    local out, ok = sh(string.format("env -u LUA_PATH -u LUA_CPATH '%s/host' /no/such/file.txt", dir))
    assert.is_false(ok)
    assert.are.equal("host: text: cannot read '/no/such/file.txt': No such file or directory\n", out)
  end)
end)
