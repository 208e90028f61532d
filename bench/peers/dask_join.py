"""Join + aggregate with a Dask dataframe: orders inner-joined with
customers on customer, then per region the number of orders and the sum
of amounts, "region\tcount\tsum" by region.

    python3 bench/peers/dask_join.py ORDERS.csv CUSTOMERS.csv
"""
import sys

import dask.dataframe as dd


def main():
    orders = dd.read_csv(sys.argv[1], dtype={"id": "int64", "customer": str, "amount": "int64"},
                         blocksize="16MiB")
    customers = dd.read_csv(sys.argv[2], dtype=str, blocksize="16MiB")
    joined = orders.merge(customers, on="customer", how="inner")
    agg = joined.groupby("region")["amount"].agg(["count", "sum"]).compute().sort_index()
    sys.stdout.write("".join(f"{r}\t{int(c)}\t{int(s)}\n"
                             for r, c, s in zip(agg.index, agg["count"], agg["sum"])))


if __name__ == "__main__":
    main()
