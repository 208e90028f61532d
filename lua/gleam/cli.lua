-- gleam.cli: the `gleam` command. Results go to stdout, messages to
-- stderr, each error as one line; the exit status is 0 on success, 1 when
-- a job fails, 2 for a usage error.
local gleam = require "gleam"

local M = {}

local USAGE = [[
usage: gleam <command> [options]

commands:
  run [--workers N] JOB.lua [ARGS...]   run a flow on this machine
  master [--listen HOST:PORT]           run a cluster master (the agents' registry)
  agent --master HOST:PORT --dir DIR    run a cluster agent that joins the master
  status --master HOST:PORT             list the agents a master knows
  help [COMMAND]                        show help for a command

options:
  -h, --help       show this help
  -v, --version    print the version

Run `gleam COMMAND --help` for the options of a command.
]]

local RUN_USAGE = [[
usage: gleam run [--workers N] JOB.lua [ARGS...]

Runs the Lua flow in JOB.lua on all cores of this machine. The script sees
ARGS in the global table `arg` (arg[0] is JOB.lua) and as `...`, as luajit
gives them.

options:
  -w, --workers N   worker threads (default: one per core)
  -h, --help        show this help
]]

local function eprintf(fmt, ...)
  io.stderr:write(string.format(fmt, ...))
end

local function usage_error(msg, usage)
  eprintf("gleam: %s\n%s", msg, usage)
  return 2
end

local function run(args)
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "-h" or a == "--help" then
      io.stdout:write(RUN_USAGE)
      return 0
    elseif a == "-w" or a == "--workers" or a:match("^%-%-workers=") then
      local v = a:match("^%-%-workers=(.*)$")
      if not v then
        i = i + 1
        v = args[i]
      end
      local n = tonumber(v)
      if not n or n < 1 or n ~= math.floor(n) or n > 1024 then
        return usage_error("--workers needs a whole number from 1 to 1024, got " .. tostring(v), RUN_USAGE)
      end
      gleam.config.workers = n
    elseif a == "--" then
      i = i + 1
      break
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return usage_error("unknown option " .. a, RUN_USAGE)
    else
      break
    end
    i = i + 1
  end
  local script = args[i]
  if not script then return usage_error("run needs a job file", RUN_USAGE) end
  local chunk, err = loadfile(script)
  if not chunk then
    eprintf("gleam: %s\n", err)
    return 1
  end
  local sargs = { [0] = script }
  for k = i + 1, #args do sargs[#sargs + 1] = args[k] end
  rawset(_G, "arg", sargs)
  local ok, msg = xpcall(chunk, function(e)
    if type(e) ~= "string" then e = tostring(e) end
    return e
  end, unpack(sargs, 1, #sargs))
  io.stdout:flush()
  if not ok then
    eprintf("gleam: %s\n", msg)
    return 1
  end
  for _, s in ipairs(gleam.unrun()) do
    eprintf("gleam: warning: %s was never run (add :run())\n", s)
  end
  return 0
end

-- Runs the command line args (a list of strings); returns the exit status.
function M.main(args)
  local cmd = args[1]
  if cmd == nil then
    io.stderr:write(USAGE)
    return 2
  end
  if cmd == "-h" or cmd == "--help" then
    io.stdout:write(USAGE)
    return 0
  end
  if cmd == "-v" or cmd == "--version" or cmd == "version" then
    io.stdout:write("gleam ", gleam.version, " (", jit.version, ")\n")
    return 0
  end
  local rest = { unpack(args, 2) }
  if cmd == "run" then return run(rest) end
  if cmd == "help" then
    if rest[1] == "run" then io.stdout:write(RUN_USAGE) else io.stdout:write(USAGE) end
    return 0
  end
  return usage_error("unknown command '" .. cmd .. "'", USAGE)
end

return M
