-- Join: orders per region, joining two CSV files and aggregating.
--
--   gleam run examples/join.lua [DIR]
--
-- DIR holds orders.csv (id,customer,amount) and customers.csv
-- (customer,region); default: examples/data. Orders whose customer has no
-- region are kept by the left join and counted under "(none)".
-- Prints: region, number of orders, total amount.
local gleam = require "gleam"

local dir = arg[1] or ((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/data")

local f = gleam.flow("orders by region")
local orders = f:csv(dir .. "/orders.csv", { header = true, types = "auto" })
  :map(function(id, customer, amount) return customer, amount end)
local customers = f:csv(dir .. "/customers.csv", { header = true })

orders
  :join(customers, { how = "left" })                   -- (customer, amount, region)
  :map(function(customer, amount, region) return region or "(none)", 1, amount end)
  :reduce_by_key(function(n1, s1, n2, s2) return n1 + n2, s1 + s2 end)
  :sort_by(1)
  :printf("%s\t%d\t%.2f\n")
  :run()
