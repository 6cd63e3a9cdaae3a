"""avprep: raw video corpora -> aligned audio-visual WebDataset shards.

A build's parallelism is its worker processes, one per core. Libraries that start a
thread per core in every worker only add CPU: numpy's OpenBLAS threads spin between calls
(about 70 ms of CPU per 1.16 s LRW clip was measured) and OpenCV's pool cost another ~12 %
of the lip-crop stage. So both default to one thread here; this must happen before numpy
or cv2 is first imported, and a value the user set wins.
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OPENCV_FOR_THREADS_NUM", "1")
