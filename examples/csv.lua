-- CSV: orders and spending per customer from a CSV file with a header.
--
--   gleam run examples/csv.lua [FILE.csv]
--
-- FILE has the columns id,customer,amount (default: examples/data/orders.csv;
-- quoted fields with commas and quotes are read per RFC 4180). Prints the
-- customers by total spent, largest first: customer, total, orders.
local gleam = require "gleam"

local path = arg[1] or ((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/data/orders.csv")

gleam.flow("spend per customer")
  :csv(path, { header = true, types = "auto" })
  :map(function(id, customer, amount) return customer, amount, 1 end)
  :reduce_by_key(function(s1, n1, s2, n2) return s1 + s2, n1 + n2 end)
  :sort_by(2, { desc = true })
  :printf("%s\t%.2f\t%d\n")
  :run()
