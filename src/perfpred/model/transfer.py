"""A new target from k measurements: the pooled model of the source targets, corrected on the k rows.

Pure core of `perfpred adapt` and of benchmarks/leave_one_target_out.py:

1. `fit_sources` fits one PooledRegressor on the union of the source targets' tables; `source_predictions` asks it,
   for every row, what each source target would measure (one log column per source).
2. `AdaptedRegressor` maps those columns to the new target:
   - k = 0 (zero-shot): the mean source prediction shifted by a level that is linear in the log of the targets'
     compute throughput (units x clock of the GPU, or of the CPU for a CPU target), fitted across the sources of
     the same kind of device; nothing else is known of the new target;
   - k >= 3: Bayesian ridge regression of log(measured / zero-shot) on the mean source log and each source's
     departure from it (the noise level, hence the shrinkage towards the zero-shot map, is learnt from the k rows);
     for a metric that saturates (power: a board's power mode caps it, the Nano at about 4.5 W whatever its sources
     draw) and k >= 8, also on hinges max(0, mean source log - knot) at the quartiles of the reference networks,
     so the map can bend where the new target reaches its cap;
   - k >= 8: plus a Gaussian process on what is left, over the standardized log features and the source
     predictions (their mean and each source's departure from it), so networks whose cost differs between boards
     in a way the sources do not share (depthwise convolutions on an older GPU) are corrected near the measured
     ones; the departures place a network by how the sources disagree on it, not only by its size and shape.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perfpred.data import schema
from perfpred.model import hardware
from perfpred.model.estimators import _base_classes
from perfpred.model.pooled import PooledRegressor

#: Rows below which no Gaussian process is fitted on the residuals (too few to tell structure from noise).
MIN_ROWS_FOR_RESIDUALS = 8

#: Metrics whose map from the sources may bend (hinges in the ridge, from MIN_ROWS_FOR_RESIDUALS rows): chosen on
#: draws 110-119 of the Jetson boards, apart from the benchmark's 0-19 (power at k = 20, Nano 9.90 % against 11.29 %,
#: AGX Xavier 6.99 % against 7.74 %, TX2 7.96 % against 8.09 %); latency and memory did as well or better without.
SATURATING_METRICS = ("power",)
#: Quantiles of the reference networks' mean source log where the hinges bend.
HINGE_QUANTILES = (25, 50, 75)


def fit_sources(sources: list[str], metric: str, columns: list[str], tables: dict[str, pd.DataFrame] | None = None,
                **settings) -> PooledRegressor:
    """A PooledRegressor fitted on the full tables of the source targets (`tables` overrides reading them)."""
    from perfpred.model.pooled import _table

    column = schema.metric_column(metric)
    parts = []
    for name in sources:
        table = tables[name] if tables is not None and name in tables else _table(name, metric)
        parts.append((name, table, table[column].to_numpy("float64")))
    return PooledRegressor(target=None, metric=metric, sources=list(sources), **settings).fit_union(parts, columns)


def default_sources(target: str, metric: str, descriptor: dict[str, float]) -> list[str]:
    """The sources `adapt` learns from when none are named: perfpred.model.pooled.same_kind_sources."""
    from perfpred.model.pooled import same_kind_sources

    return same_kind_sources(target, metric, descriptor)


def source_predictions(model: PooledRegressor, features: pd.DataFrame) -> np.ndarray:
    """log of what each source target of the pooled model would measure, one column per source (rows x sources)."""
    return np.column_stack([np.log(model.predict_as(features, name)) for name in model.targets_])


def throughput(descriptor: dict[str, float]) -> float:
    """Compute units x clock (GPU when it has CUDA cores, else CPU): what the zero-shot level scales with."""
    if descriptor["cuda_cores"] > 0:
        return descriptor["cuda_cores"] * descriptor["gpu_max_clock_mhz"]
    return max(descriptor["cpu_cores"] * descriptor["cpu_max_clock_mhz"], 1.0)


class AdaptedRegressor(*_base_classes()):
    """Predicts a new target from a fitted source PooledRegressor, its descriptor, and k measured rows."""

    def __init__(self, source_model: PooledRegressor, descriptor: dict[str, float], use_residuals: bool = True):
        self.source_model = source_model
        self.descriptor = descriptor
        self.use_residuals = use_residuals

    def _zero_shot_level(self, source_logs: np.ndarray) -> float:
        """Level of the new target relative to the mean source prediction, from the sources of its device kind."""
        names = self.source_model.targets_
        offsets = (source_logs - source_logs.mean(axis=1, keepdims=True)).mean(axis=0)
        is_gpu = self.descriptor["cuda_cores"] > 0
        same_kind = [i for i, n in enumerate(names) if (self.source_model.descriptors_[n]["cuda_cores"] > 0) == is_gpu]
        if not same_kind:
            return float(np.mean(offsets))
        log_throughput = np.log([throughput(self.source_model.descriptors_[names[i]]) for i in same_kind])
        if len(same_kind) < 2 or np.ptp(log_throughput) == 0:
            return float(np.mean(offsets[same_kind]))
        slope, intercept = np.polyfit(log_throughput, offsets[same_kind], 1)
        return float(intercept + slope * np.log(throughput(self.descriptor)))

    def _log_features(self, features: pd.DataFrame) -> np.ndarray:
        return np.log1p(features[self.source_model.columns_].to_numpy("float64"))

    def fit(self, features: pd.DataFrame | None, target=None) -> AdaptedRegressor:
        """Fit the map from the source predictions to k measured rows (k = 0: `features` None, zero-shot)."""
        reference = self.source_model.reference_features_
        reference_logs = source_predictions(self.source_model, reference)
        self.level_ = self._zero_shot_level(reference_logs)
        self.rows_ = 0 if features is None else len(features)
        self.linear_ = self.residuals_ = self.knots_ = None
        if self.rows_ == 0:
            return self
        from sklearn.linear_model import BayesianRidge

        features = pd.DataFrame(features)
        measured_log = np.log(np.asarray(target, dtype="float64"))
        source_logs = source_predictions(self.source_model, features)
        if self.rows_ < 3:  # a level only: the zero-shot map shifted to the measured rows
            self.level_ += float(np.mean(measured_log - self._zero_shot(source_logs)))
            return self
        # prior mean: the zero-shot map; the ridge learns departures from it, shrunk to 0 when k rows cannot tell
        if self.source_model.metric in SATURATING_METRICS and self.rows_ >= MIN_ROWS_FOR_RESIDUALS:
            self.knots_ = np.percentile(reference_logs.mean(axis=1), HINGE_QUANTILES)
        self.linear_ = BayesianRidge().fit(self._linear_inputs(source_logs), measured_log - self._zero_shot(source_logs))
        if self.use_residuals and self.rows_ >= MIN_ROWS_FOR_RESIDUALS:
            self.residuals_ = self._residual_model(features, source_logs, measured_log - self._linear(source_logs))
        return self

    @staticmethod
    def _departures(source_logs: np.ndarray) -> np.ndarray:
        """The overall scale (mean source log) and each source's departure from it: the ridge's inputs."""
        mean = source_logs.mean(axis=1, keepdims=True)
        return np.hstack([mean, source_logs - mean])

    def _linear(self, source_logs: np.ndarray) -> np.ndarray:
        return self._zero_shot(source_logs) + self.linear_.predict(self._linear_inputs(source_logs))

    def _linear_inputs(self, source_logs: np.ndarray) -> np.ndarray:
        """The ridge's inputs: the departures, and the hinges of the mean source log when the metric saturates."""
        departures = self._departures(source_logs)
        if getattr(self, "knots_", None) is None:  # models pickled before the hinges have no knots_
            return departures
        return np.hstack([departures, np.maximum(departures[:, :1] - self.knots_, 0.0)])

    def _residual_model(self, features: pd.DataFrame, source_logs: np.ndarray, residuals: np.ndarray):
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        inputs = self._residual_inputs(features, source_logs)
        kernel = ConstantKernel(0.01, (1e-5, 1.0)) * RBF(3.0, (0.3, 100.0)) + WhiteKernel(1e-3, (1e-6, 0.1))
        process = GaussianProcessRegressor(kernel, normalize_y=False, random_state=0, n_restarts_optimizer=0)
        with warnings.catch_warnings():  # a length scale or noise at its bound is an answer here, not news
            warnings.simplefilter("ignore", ConvergenceWarning)
            return make_pipeline(StandardScaler(), process).fit(inputs, residuals)

    def _residual_inputs(self, features: pd.DataFrame, source_logs: np.ndarray) -> np.ndarray:
        """The Gaussian process's inputs: log features, mean source log and each source's departure from it.

        The departures were chosen over the mean source log alone on draws 100-109 of the Jetson boards (k = 10, 20,
        50; latency at k = 50: AGX Xavier 6.82 % against 7.49 %, TX2 5.23 % against 5.81 %, Nano 7.02 % against
        6.99 %), apart from the benchmark's draws 0-19.
        """
        return np.column_stack([self._log_features(features), self._departures(source_logs)])

    def _zero_shot(self, source_logs: np.ndarray) -> np.ndarray:
        return source_logs.mean(axis=1) + self.level_

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Predictions on the new target, in the metric's unit."""
        features = pd.DataFrame(features)
        source_logs = source_predictions(self.source_model, features)
        if self.linear_ is None:
            return np.exp(self._zero_shot(source_logs))
        predicted = self._linear(source_logs)
        if self.residuals_ is not None:
            predicted = predicted + self.residuals_.predict(self._residual_inputs(features, source_logs))
        return np.exp(predicted)


def out_of_fold(estimator: AdaptedRegressor, features: pd.DataFrame, measured: np.ndarray, folds: int = 5,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rows, predictions) of a k-fold over the measured rows: each row predicted by a map fitted without it."""
    from sklearn.model_selection import KFold

    folds = min(folds, len(measured))
    rows, predicted = [], []
    for train_rows, test_rows in KFold(folds, shuffle=True, random_state=seed).split(features):
        # not sklearn's clone: it would clone the fitted source model too, unfitted
        fitted = AdaptedRegressor(estimator.source_model, estimator.descriptor, estimator.use_residuals).fit(features.iloc[train_rows], measured[train_rows])
        rows.append(test_rows)
        predicted.append(fitted.predict(features.iloc[test_rows]))
    return np.concatenate(rows), np.concatenate(predicted)


def zero_shot_descriptor(name: str, hardware_file=None) -> dict[str, float]:
    """The descriptor of the new target (conf/target/<name>.yaml or a --hardware file)."""
    return hardware.descriptor(name, hardware_file)
