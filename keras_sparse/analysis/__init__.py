"""Analysis tools: statistics of repeated runs and a resumable grid runner.

`stats` summarises seeds and compares methods (paired tests, Holm
correction, Kendall's tau); `sweep` runs a grid of cells times seeds,
resumably, one result file per run.
"""

from keras_sparse.analysis import stats, sweep

__all__ = ["stats", "sweep"]
