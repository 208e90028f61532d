-- gleam.cli: the `gleam` command. Results go to stdout, messages to
-- stderr, each error as one line; the exit status is 0 on success, 1 when
-- a job fails, 2 for a usage error.
local ffi = require "ffi"
local gleam = require "gleam"

local M = {}

local USAGE = [[
usage: gleam <command> [options]

commands:
  run [OPTIONS] JOB.lua [ARGS...]       run a flow on this machine
  repl [OPTIONS] [-e CHUNK]             an interactive prompt over the engine
  master [--listen HOST:PORT]           run a cluster master (the agents' registry)
  agent --master HOST:PORT --dir DIR    run a cluster agent that joins the master
  status --master HOST:PORT             list the agents a master knows
  help [COMMAND]                        show help for a command

options:
  -h, --help       show this help
  -v, --version    print the version

Run `gleam help COMMAND` or `gleam COMMAND --help` for the options of a command.
]]

local RUN_USAGE = [[
usage: gleam run [--workers N] [--memory SIZE] [--dir DIR] JOB.lua [ARGS...]
       gleam run --master HOST:PORT [--max-attempts N] JOB.lua [ARGS...]

Runs the Lua flow in JOB.lua on all cores of this machine, or with
--master on the executors of a cluster's agents (same answer). The script
sees ARGS in the global table `arg` (arg[0] is JOB.lua) and as `...`, as
luajit gives them.

options:
  -w, --workers N   worker threads (default: one per core)
  -m, --memory SIZE memory budget, e.g. 256M or 2G (default: half of the
                    machine's memory); past it, data moves to LMDB on disk
                    and sort, group, reduce and join work from disk
  -d, --dir DIR     directory of the on-disk store (default: a temporary
                    one, removed at exit); made if missing, kept after
  --master HOST:PORT  run on the cluster of the master there (the secret
                    from GLEAM_SECRET); --workers is then the slots granted
  --max-attempts N  runs of a failing cluster task before the job fails
                    (default 3)
  -h, --help        show this help
]]

local REPL_USAGE = [[
usage: gleam repl [--workers N] [--memory SIZE] [--dir DIR] [--master HOST:PORT] [-e CHUNK]...

A LuaJIT prompt over the engine, local on this machine's cores, with
`gleam` loaded and a flow `f` to start from. A line that is an expression
prints its value: a dataset prints its plan without running it, and
ds:show(n), ds:count(), ds:collect() run it and print the result. An
unfinished statement continues on the next line; variables (locals too)
last for the session. Tab completes names, fields (a.b.) and methods
(ds:); history is kept in ~/.gleam_history. Ctrl-C cancels a running job
or clears the line, Ctrl-D leaves, .help lists commands and methods.

With -e, runs each CHUNK as one input and exits; with stdin not a
terminal (gleam repl < script.lua), runs its lines as typed, without
prompts. Either way values are printed and the first error ends the run
with status 1.

options:
  -w, --workers N   worker threads (default: one per core)
  -m, --memory SIZE memory budget, as for gleam run
  -d, --dir DIR     directory of the on-disk store, as for gleam run
  --master HOST:PORT  run jobs on the cluster of the master there
  -e CHUNK          run CHUNK as an input, then exit (may be repeated)
  -h, --help        show this help

With --master HOST:PORT, jobs run on that cluster's agents (the banner
says how many and their cores); ds:cache() is local mode only for now.
]]

local function eprintf(fmt, ...)
  io.stderr:write(string.format(fmt, ...))
end

local function usage_error(msg, usage)
  eprintf("gleam: %s\n%s", msg, usage)
  return 2
end

-- v as a whole number from 1 to most, or nil.
local function whole(v, most)
  local n = tonumber(v)
  if n and n >= 1 and n <= most and n == math.floor(n) then return n end
end

-- The options run and repl share (-h; -w N, --workers=N; -m SIZE,
-- --memory=SIZE; -d DIR, --dir=DIR; --master HOST:PORT; --max-attempts N;
-- each long one also as --name=value) at args[i]. Returns the index of the
-- last argument used; or false when args[i] is none of them; or nil and
-- the exit status when the command is done.
local function shared_option(args, i, usage)
  local a = args[i]
  if a == "-h" or a == "--help" then
    io.stdout:write(usage)
    return nil, 0
  end
  local name
  for _, o in ipairs({ { "-w", "workers" }, { "-m", "memory" }, { "-d", "dir" }, { "--master", "master" },
                       { "--max-attempts", "max_attempts" } }) do
    local long = "--" .. o[2]:gsub("_", "-")
    if a == o[1] or a == long or a:sub(1, #long + 1) == long .. "=" then name = o[2] end
  end
  if not name then return false end
  local long = "--" .. name:gsub("_", "-")
  local v = a:sub(1, #long + 1) == long .. "=" and a:sub(#long + 2) or nil
  if not v then
    i = i + 1
    v = args[i]
  end
  if name == "workers" then
    local n = whole(v, 1024)
    if not n then
      return nil, usage_error("--workers needs a whole number from 1 to 1024, got " .. tostring(v), usage)
    end
    gleam.config.workers = n
  elseif name == "master" then
    if not v or not v:match("^.+:%d+$") then
      return nil, usage_error("--master needs HOST:PORT, got " .. tostring(v), usage)
    end
    gleam.config.master = v
  elseif name == "max_attempts" then
    local n = whole(v, 100)
    if not n then
      return nil, usage_error("--max-attempts needs a whole number from 1 to 100, got " .. tostring(v), usage)
    end
    gleam.config.max_attempts = n
  elseif name == "memory" then
    local n, why = gleam.parse_size(v or "")
    if not n or n == 0 then return nil, usage_error("--memory: " .. (why or "must be more than 0"), usage) end
    gleam.config.memory = n
  else
    if not v or v == "" then return nil, usage_error("--dir needs a directory", usage) end
    gleam.config.dir = v
  end
  return i
end

local function run(args)
  local i = 1
  while i <= #args do
    local a = args[i]
    local used, status = shared_option(args, i, RUN_USAGE)
    if used == nil then
      return status
    elseif used then
      i = used
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

-- gleam repl: the prompt (cli/lineedit.c) on a terminal, else -e chunks
-- or stdin's lines through the same evaluator.
local function repl_cmd(args)
  local chunks = {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local used, status = shared_option(args, i, REPL_USAGE)
    if used == nil then
      return status
    elseif used then
      i = used
    elseif a == "-e" then
      i = i + 1
      if args[i] == nil then return usage_error("-e needs a chunk of Lua", REPL_USAGE) end
      chunks[#chunks + 1] = args[i]
    else
      return usage_error("unknown option " .. a, REPL_USAGE)
    end
    i = i + 1
  end
  local repl = require "gleam.repl"
  if #chunks > 0 then
    local s = repl.session { chunkname = "(command line)" }
    for _, c in ipairs(chunks) do
      if not s:eval(c) then return 1 end
    end
    return 0
  end
  pcall(ffi.cdef, "int isatty(int fd);")
  if ffi.C.isatty(0) == 0 then
    local s = repl.session()
    for line in io.stdin:lines() do
      local status = s:feed(line)
      if status == "error" then return 1 end
      if status == "exit" then return 0 end
    end
    if s:continuing() then
      local _, err = s:compile(s.pending, s.pending_line)
      eprintf("gleam: %s\n", err)
      return 1
    end
    return 0
  end
  local ok, lineedit = pcall(require, "gleam.lineedit")
  if not ok then
    eprintf("gleam: the interactive REPL needs the gleam executable (%s)\n", lineedit)
    return 1
  end
  return repl.interactive(lineedit)
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
  if cmd == "repl" then return repl_cmd(rest) end
  if cmd == "help" then
    local text = ({ run = RUN_USAGE, repl = REPL_USAGE })[rest[1]] or USAGE
    io.stdout:write(text)
    return 0
  end
  return usage_error("unknown command '" .. cmd .. "'", USAGE)
end

return M
