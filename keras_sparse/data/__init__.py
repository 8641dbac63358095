"""TFDS input pipelines for the data sets of the sparse-training papers.

Data sets are read from `$TFDS_DATA_DIR` (or `data_dir=`) and never
downloaded unless `download=True` is passed.
"""

from keras_sparse.data.epochs import EpochSync
from keras_sparse.data.pipelines import info, load, names

__all__ = ["EpochSync", "info", "load", "names"]
