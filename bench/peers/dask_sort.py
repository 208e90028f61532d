"""Sort with a Dask dataframe: the lines of FILE in byte order, to OUT.

    python3 bench/peers/dask_sort.py FILE OUT

Each line is one string column (the records hold no tabs or quotes);
sort_values orders it across partitions and to_csv writes one file.
"""
import csv
import sys

import dask.dataframe as dd


def main():
    path, out = sys.argv[1], sys.argv[2]
    df = dd.read_csv(path, header=None, names=["line"], sep="\t", dtype=str,
                     quoting=csv.QUOTE_NONE, blocksize="16MiB")
    df.sort_values("line").to_csv(out, single_file=True, header=False, index=False,
                                  quoting=csv.QUOTE_NONE)


if __name__ == "__main__":
    main()
