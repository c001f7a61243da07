"""The training domain of a predictor: is a model like the rows it was trained on, and how far out is it?

The rule, applied to the predictor's own feature columns in log space (z = log1p(feature)), against the
training rows only:

1. Range: a feature is *outside* when its z lies beyond the training [min, max] widened by
   `RANGE_MARGIN` (log(1.5): 1.5x smaller than the smallest or larger than the largest value seen).
2. Neighbours: in standardized z space (training mean and standard deviation), the model's distance to
   its nearest training row is compared with the training rows' own nearest-neighbour distances
   (each row against the others). A model farther than the most isolated training row is *far*.

A model is in the domain when no feature is outside and it is not far. Prediction intervals widen by
how far out it is: their log-width is multiplied by `widening` = 1 + (largest excess of a feature
beyond its unwidened training range, in log units) + (how much the neighbour distance exceeds the
threshold, as a fraction of it), at most `MAX_WIDENING`. Everything is kept in `Domain` (a few arrays),
stored with the registered model, so no training table is needed at prediction time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: how far beyond the training range (in log1p units) a feature may go and still count as inside
RANGE_MARGIN = math.log(1.5)
#: pseudo-feature named when a model is inside every range but far from every training row
FAR_FROM_ROWS = "nearest_row"
#: the most an interval's log-width is multiplied by: a feature that barely varies over the training rows (a kernel
#: group the zoo hardly holds, such as the transposed convolutions of host-cpu-tf's `rest`) standardises a new model's
#: value to hundreds of units, and its nearest-neighbour excess had widened a U-Net's 90 % interval of a 6 ms model to
#: 0 - 1e56 ms (benchmarks/kernels_novel.py, 2026-11-30). Five times a random split's width already spans about 3x
#: either way on the host toolchains: an honest "far from anything measured", still a number a user can read
MAX_WIDENING = 5.0


@dataclass(frozen=True)
class Domain:
    """Summary of the training rows in log-feature space: ranges, standardisation, the rows, the NN threshold."""

    features: tuple[str, ...]
    low: np.ndarray  # per feature: min of log1p over the training rows
    high: np.ndarray  # per feature: max of log1p
    mean: np.ndarray  # standardisation of log1p features
    scale: np.ndarray
    points: np.ndarray  # training rows, standardized (float32: a few hundred KB at most)
    nn_threshold: float  # the largest nearest-neighbour distance among the training rows

    @classmethod
    def fit(cls, table: pd.DataFrame, features: list[str]) -> Domain:
        """The domain of the training rows `table[features]`."""
        z = _log_features(table, features)
        mean, scale = z.mean(axis=0), z.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)  # a constant feature: any change is in units of 1
        points = (z - mean) / scale
        nearest = _nearest_distances(points, points, exclude_self=True)
        threshold = float(np.max(nearest)) if len(nearest) else 0.0
        return cls(tuple(features), z.min(axis=0), z.max(axis=0), mean, scale, points.astype("float32"), threshold)

    def check(self, table: pd.DataFrame) -> pd.DataFrame:
        """Per row: `in_domain` (bool), `outside` (features out of range, or 'nearest_row'), `widening` (>= 1)."""
        z = _log_features(table, list(self.features))
        below, above = self.low - z, z - self.high
        beyond = np.maximum(np.maximum(below, above), 0.0)
        out_of_range = beyond > RANGE_MARGIN
        nearest = _nearest_distances((z - self.mean) / self.scale, self.points.astype("float64"))
        far = nearest > self.nn_threshold
        nn_excess = np.maximum(nearest / self.nn_threshold - 1.0, 0.0) if self.nn_threshold > 0 else np.zeros(len(z))
        outside = [
            [name for name, out in zip(self.features, row, strict=True) if out] + ([FAR_FROM_ROWS] if is_far else [])
            for row, is_far in zip(out_of_range, far, strict=True)
        ]
        return pd.DataFrame(
            {
                "in_domain": [not names for names in outside],
                "outside": outside,
                "widening": np.minimum(1.0 + beyond.max(axis=1, initial=0.0) + nn_excess, MAX_WIDENING),
            },
            index=table.index,
        )


def _log_features(table: pd.DataFrame, features: list[str]) -> np.ndarray:
    values = table[features].apply(pd.to_numeric, errors="coerce").to_numpy("float64")
    return np.log1p(np.maximum(values, 0.0))


def _nearest_distances(queries: np.ndarray, points: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    """Euclidean distance from each query to its nearest point (a k-d tree: thousands of rows per millisecond)."""
    from scipy.spatial import cKDTree

    if not len(points) or (exclude_self and len(points) < 2):
        return np.full(len(queries), np.inf)
    distances, _ = cKDTree(points).query(queries, k=2 if exclude_self else 1)
    return distances[:, 1] if exclude_self else distances  # with exclude_self the queries are the points: skip each itself
