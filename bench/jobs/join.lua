-- Join + aggregate: orders (id,customer,amount) inner-joined with customers
-- (customer,region) on customer; per region the number of orders and the
-- sum of amounts, "region\tcount\tsum" by region.
--
--   gleam run bench/jobs/join.lua ORDERS.csv CUSTOMERS.csv
local gleam = require "gleam"

local f = gleam.flow("bench join")
local orders = f:csv(arg[1], { header = true, types = { "integer", "string", "integer" } })
  :map(function(id, customer, amount) return customer, amount end)
local customers = f:csv(arg[2], { header = true, types = { "string", "string" } })

orders
  :join(customers)                                            -- (customer, amount, region)
  :map(function(customer, amount, region) return region, 1, amount end)
  :reduce_by_key(gleam.fn.sum)
  :sort_by(1)
  :printf("%s\t%d\t%d\n")
  :run()
