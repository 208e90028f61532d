-- spec/tmux.lua: `gleam repl` in a real terminal, for the REPL specs. Each
-- terminal is a private tmux server (its socket in a temp dir), so specs
-- running in parallel never see each other's sessions; kill() ends the
-- server and everything in it. Keys go in with send-keys, the screen comes
-- back with capture-pane, and every wait polls the screen (or the REPL's
-- process) against a deadline: nothing is synchronised by sleeping alone.
--
-- The pane runs `gleam repl ARGS...; echo "[exited $?]"; sleep 600`, so
-- the REPL's exit status stays on the screen after it ends.
local h = require "helpers"

local term = {}

local Term = {}
Term.__index = Term

local function sleep(s) h.sleep_ms(s * 1000) end

-- Whether tmux is installed.
function term.available()
  local _, ok = h.sh("command -v tmux")
  return ok
end

-- Starts `gleam repl ARGS...` (args: a list of words) in a new tmux server,
-- from the source tree, HOME a temp dir (so ~/.gleam_history is its own).
-- opts: width, height (the pane's size; default 100 x 80), env ({ NAME =
-- value } for the REPL). Returns the terminal; it is not waited for.
function term.start(args, opts)
  opts = opts or {}
  local dir = h.tmpdir()
  local t = setmetatable({ dir = dir, sock = dir .. "/tmux.sock", home = dir .. "/home" }, Term)
  os.execute("mkdir -p " .. h.quote(t.home))
  local words = {}
  for _, a in ipairs(args) do words[#words + 1] = h.quote(a) end
  local env = {}
  for k, v in pairs(opts.env or {}) do env[#env + 1] = k .. "=" .. h.quote(v) end
  -- In the sanitizer build a leak makes the REPL's exit status non-zero
  -- (the spec environment turns leak checks off for luajit's sake, not
  -- gleam's).
  local cmd = string.format("cd %s && ASAN_OPTIONS=detect_leaks=1 HOME=%s %s %s repl %s; " ..
    "echo \"[exited $?]\"; sleep 600",
    h.quote(h.source_dir), h.quote(t.home), table.concat(env, " "), h.quote(h.bin), table.concat(words, " "))
  -- tmux itself without the sanitizer build's LD_PRELOAD (gleam has its own).
  local out, ok = h.sh(string.format("env -u LD_PRELOAD -u LANG -u LC_ALL -u LC_CTYPE tmux -S %s -f /dev/null " ..
    "new-session -d -x %d -y %d %s", h.quote(t.sock), opts.width or 100, opts.height or 80, h.quote(cmd)))
  assert(ok, "tmux new-session failed: " .. out)
  return t
end

function Term:tmux(args)
  local out, ok = h.sh("env -u LD_PRELOAD tmux -S " .. h.quote(self.sock) .. " " .. args)
  assert(ok, "tmux " .. args .. ": " .. out)
  return out
end

-- Ends the tmux server and the REPL in it.
function Term:kill()
  h.sh("env -u LD_PRELOAD tmux -S " .. h.quote(self.sock) .. " kill-server")
end

-- The whole screen and scrollback, trailing blank lines dropped.
function Term:screen()
  return (self:tmux("capture-pane -p -S -"):gsub("%s+$", "")) .. "\n"
end

-- Waits until check(screen) is true (up to `timeout` seconds, default 20);
-- returns the screen.
function Term:wait(check, what, timeout)
  local deadline = os.time() + (timeout or 20)
  local screen
  repeat
    screen = self:screen()
    if check(screen) then return screen end
    sleep(0.1)
  until os.time() > deadline
  error("timed out waiting for " .. what .. "; the screen:\n" .. screen, 2)
end

function Term:wait_text(text, timeout)
  return self:wait(function(s) return s:find(text, 1, true) ~= nil end, "'" .. text .. "'", timeout)
end

-- The prompts on a screen, first and continuation lines alike.
function term.prompts(screen)
  local n = 0
  for line in screen:gmatch("[^\n]*") do
    if line:match("^gleam> ") or line:match("^  %.%.%.> ") then n = n + 1 end
  end
  return n
end
local prompts = term.prompts

-- True when the screen's last line is an empty prompt.
function term.at_prompt(screen)
  local last = screen:match("([^\n]*)\n$") or ""
  return last == "gleam>" or last == "gleam> " or last == "  ...>"
end
local at_prompt = term.at_prompt

-- Types text as it is (no key names).
function Term:type(text)
  self:tmux("send-keys -l " .. h.quote(text))
end

-- Sends tmux key names (Enter, Tab, C-c, ...).
function Term:keys(keys)
  self:tmux("send-keys " .. keys)
end

-- Types a line and waits for the next prompt; returns the screen.
function Term:line(text, timeout)
  local before = prompts(self:screen())
  self:type(text)
  self:keys("Enter")
  return self:wait(function(s) return prompts(s) > before and at_prompt(s) end, "the prompt after " .. text, timeout)
end

-- The cursor's row in the pane, from 0.
function Term:cursor_row()
  return tonumber((self:tmux("display-message -p '#{cursor_y}'")))
end

-- Whether the cursor is at the start of the line below the screen's last
-- text (while a session fits the pane's height there is no scrollback, so
-- the cursor's row counts the lines above).
function Term:cursor_below(screen)
  local _, nl = screen:gsub("\n", "")
  return self:cursor_row() == nl
end

-- Types a line and waits until it is taken (the cursor has left it), not
-- for the prompt: for a job to interrupt.
function Term:start_line(text)
  self:type(text)
  self:keys("Enter")
  self:wait(function(s) return s:find(text, 1, true) and self:cursor_below(s) end,
    "the line to be taken: " .. text)
end

-- The first child of process pid: from /proc/PID/task/PID/children where
-- the kernel has it, else from every process's parent in /proc/*/stat.
local function child_of(pid)
  local kids = h.read_file(string.format("/proc/%d/task/%d/children", pid, pid))
  if kids then return tonumber(kids:match("%d+")) end
  local p = io.popen("ls /proc")
  for name in p:lines() do
    local stat = name:match("^%d+$") and h.read_file("/proc/" .. name .. "/stat") or ""
    if tonumber(stat:match("%)%s+%S+%s+(%d+)")) == pid then
      p:close()
      return tonumber(name)
    end
  end
  p:close()
  return nil
end

-- The REPL's pid: the child of the pane's shell.
function Term:pid()
  if self.repl_pid then return self.repl_pid end
  local shell = tonumber((self:tmux("display-message -p '#{pane_pid}'")))
  self.repl_pid = h.wait_for(10, function() return child_of(shell) end)
  assert(self.repl_pid, "the pane's shell (pid " .. tostring(shell) .. ") has no child")
  return self.repl_pid
end

-- The last line of the REPL's history file, decoded (libedit writes
-- spaces and other blanks as octal escapes: \040).
function Term:last_history()
  local hist = h.read_file(self.home .. "/.gleam_history") or ""
  local last = hist:match("([^\n]*)\n$") or ""
  return (last:gsub("\\(%d%d%d)", function(o) return string.char(tonumber(o, 8)) end))
end

-- The CPU time the REPL's process has used, in clock ticks (all threads).
function Term:cpu_ticks()
  local stat = h.read_file("/proc/" .. self:pid() .. "/stat") or ""
  -- the fields after the command's ")": utime is the 12th, stime the 13th
  local f = {}
  for w in (stat:match("%)%s+(.*)$") or ""):gmatch("%S+") do f[#f + 1] = w end
  assert(f[13], "cannot read the REPL's CPU time from /proc/" .. self:pid() .. "/stat")
  return tonumber(f[12]) + tonumber(f[13])
end

-- Types a line that runs a job, and returns once the job is running, so a
-- Ctrl-C reaches the job and not the line editor. The REPL saves its
-- history just before it evaluates a line, so the line there as the last
-- entry says evaluation is a few instructions away; then `ticks` clock
-- ticks of CPU (default 2) say the job computes: the REPL takes none
-- waiting at the prompt. (A job that waits rather than computes, as on a
-- cluster, needs its own sign: pass ticks = 0 and wait for it.)
function Term:start_job(text, ticks)
  self:start_line(text)
  local deadline = os.time() + 20
  while self:last_history() ~= text do
    if os.time() > deadline then
      error("timed out waiting for the line in the history; its last line: " .. self:last_history(), 2)
    end
    sleep(0.02)
  end
  local since = self:cpu_ticks()
  while self:cpu_ticks() - since < (ticks or 2) do
    if os.time() > deadline then error("timed out waiting for the job to compute; the screen:\n" .. self:screen(), 2) end
    sleep(0.02)
  end
end

-- The number of lines of the screen that end in the terminal's "^C".
local function interrupts(screen)
  local n = 0
  for _ in (screen .. "\n"):gmatch("%^C\n") do n = n + 1 end
  return n
end

-- Presses Ctrl-C during a job and waits until the REPL has taken it: it
-- answers the terminal's "^C" with a newline once it has asked the job to
-- stop (what follows, a progress line or the prompt, is not waited for).
function Term:interrupt()
  local before = interrupts(self:screen())
  self:keys("C-c")
  return self:wait(function(s)
    if interrupts(s) <= before then return false end
    return not s:match("%^C\n$") or self:cursor_below(s)
  end, "the REPL to take Ctrl-C")
end

-- Starts a REPL (args as for term.start) and waits for its first prompt.
function term.start_repl(args, opts)
  local t = term.start(args, opts)
  t:wait(at_prompt, "the first prompt")
  return t
end

return term
