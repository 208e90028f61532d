-- Startup: the smallest flow end to end; prints the number of rows (10).
local gleam = require "gleam"

print(#gleam.flow("bench startup"):range(10):collect())
