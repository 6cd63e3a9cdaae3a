"""avprep: raw video corpora -> aligned audio-visual WebDataset shards.

A build's parallelism is its worker processes, one per core: numpy's BLAS (OpenBLAS)
would otherwise start a thread per core in every worker, and those threads spin between
calls (about 70 ms of CPU per 1.16 s LRW clip was measured). Set before numpy loads;
an OPENBLAS_NUM_THREADS of the user's own wins.
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
