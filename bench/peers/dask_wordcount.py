"""Word count with a Dask bag: the 100 most frequent words of FILE,
"word\tcount". Words are runs of ASCII letters and digits.

    python3 bench/peers/dask_wordcount.py FILE [--cluster]

Without --cluster the bag runs on Dask's local (multiprocessing) scheduler;
with it, on a LocalCluster of 2 worker processes, 1 thread each.
"""
import re
import sys

import dask
import dask.bag as db

WORD = re.compile(r"[A-Za-z0-9]+")


def main():
    path, cluster = sys.argv[1], "--cluster" in sys.argv[2:]
    client = None
    if cluster:
        from dask.distributed import Client, LocalCluster
        client = Client(LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None))
    words = db.read_text(path, blocksize="16MiB").map(WORD.findall).flatten()
    top = words.frequencies().topk(100, key=1)
    if client is None:
        rows = top.compute(scheduler="processes")
    else:
        rows = top.compute()
        client.close()
    sys.stdout.write("".join(f"{w}\t{n}\n" for w, n in rows))


if __name__ == "__main__":
    main()
