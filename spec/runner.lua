-- Runs busted under LuaJIT (Debian's busted script runs the system lua).
require "busted.runner" ({ standalone = false })
