"""A new target from k measurements: the source targets' own models, corrected on the k rows.

Pure core of `perfpred adapt` and of benchmarks/leave_one_target_out.py:

1. `fit_sources` fits, per source target, the algorithm `SOURCE_ALGORITHM` (conf/algorithm/, as `perfpred train`
   builds it for that target) on the source's whole table; `source_predictions` asks each what its target would
   measure, for every row (one log column per source).
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
     ones; the departures place a network by how the sources disagree on it, not only by its size and shape;
   - k >= 8, for a metric that adds up over the network's layers (latency: `ADDITIVE_METRICS`), the geometric mean
     of that map and of a mixture in the metric's own unit: measured ~ sum_j c_j x source_j + c_f flops +
     c_a activations + c_l layers + c_0 with every c >= 0 (relative least squares), and a Gaussian process on its log
     residuals as above. A new board is another mix of the same costs (compute, memory traffic, per-layer
     overhead) that the sources pay in other proportions; a power law of the sources cannot say that a Nano pays
     a DenseNet's many small layers more than its FLOPs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perfpred.data import schema
from perfpred.model import hardware
from perfpred.model.estimators import _base_classes

#: Rows below which no Gaussian process is fitted on the residuals (too few to tell structure from noise).
MIN_ROWS_FOR_RESIDUALS = 8

#: Metrics whose map from the sources may bend (hinges in the ridge, from MIN_ROWS_FOR_RESIDUALS rows): chosen on
#: draws 110-119 of the Jetson boards, apart from the benchmark's 0-19 (power at k = 20, Nano 9.90 % against 11.29 %,
#: AGX Xavier 6.99 % against 7.74 %, TX2 7.96 % against 8.09 %); latency and memory did as well or better without.
SATURATING_METRICS = ("power",)
#: Quantiles of the reference networks' mean source log where the hinges bend.
HINGE_QUANTILES = (25, 50, 75)

#: The algorithm fitted on each source's table (conf/algorithm/). Chosen on draws 100-129 of the Jetson boards, apart
#: from the benchmark's 0-19, over one pooled XGBoost of every source (perfpred.model.pooled.PooledRegressor, what
#: adapt used before): latency at k = 20 Nano / TX2 / AGX Xavier 9.16 / 6.76 / 8.84 % against 9.12 / 6.82 / 10.10,
#: power 9.66 / 7.58 / 7.12 against 9.73 / 7.57 / 7.40, memory at k = 10 11.62 / 7.59 / 5.98 against 11.93 / 7.82 /
#: 6.51. Per-target algorithms only: a pooled one would learn from the new target's rows when the benchmark leaves it out.
SOURCE_ALGORITHM = "ens"

#: Metrics that add up over a network's layers: their map also mixes the sources in the metric's unit (see above).
#: Chosen on draws 100-129 (latency at k = 20, Nano / TX2 / AGX Xavier, with `ens` sources: 8.33 / 6.66 / 7.37 %
#: against 9.16 / 6.76 / 8.84 without the mixture; host toolchains TF / TFLite / ORT 14.9 / 15.8 / 12.7 against
#: 21.5 / 20.5 / 13.9). Power is not a sum over layers (13.2 / 11.1 / 6.5 with it against 9.7 / 7.6 / 7.1), nor is
#: a peak of memory (Nano memory at k = 10: 14.6 against 11.6).
ADDITIVE_METRICS = ("latency",)
#: The physical costs beside the sources in the mixture: compute, memory traffic, per-layer overhead.
MIX_TERMS = ("flops", "activations", "layers")


class SourceModels:
    """One model per source target, fitted on that target's whole table: what each source would measure."""

    def __init__(self, metric: str, algorithm: str = SOURCE_ALGORITHM):
        self.metric = metric
        self.algorithm = algorithm

    def fit_tables(self, parts: list[tuple[str, pd.DataFrame, np.ndarray]], columns: list[str]) -> SourceModels:
        """Fit on (source name, table, measured) parts; `columns` are the features predictions will give.

        A source uses the columns its own table fills in every row (the Nano memory rows lack some features)."""
        from perfpred.model import train

        if not parts:
            raise ValueError(f"adapt {self.metric}: no source target has a table to learn from (run `perfpred import` first)")
        self.columns_ = list(columns)
        self.targets_ = sorted(name for name, _, _ in parts)
        self.descriptors_ = {name: hardware.descriptor(name) for name in self.targets_}
        self.models_, self.columns_of_ = {}, {}
        for name, table, measured in sorted(parts, key=lambda part: part[0]):
            own = [c for c in self.columns_ if c in table.columns and table[c].notna().all()]
            if not own:
                raise ValueError(f"source {name!r}: its {self.metric} table fills none of the features {self.columns_}")
            algorithm = train.tuned_config(name, self.metric, self.algorithm)[0].algorithm
            self.models_[name] = train.build_estimator(algorithm, name, self.metric).fit(table[own], measured)
            self.columns_of_[name] = own
        # networks on which a new target's level is compared with the sources' (AdaptedRegressor, k = 0): rows
        # complete in what some source reads; sources that read disjoint columns leave none, and then each gap
        # is its column's median (the rows only compare the sources' levels)
        read = [c for c in self.columns_ if any(c in own for own in self.columns_of_.values())]
        union = pd.concat([table.reindex(columns=read) for _, table, _ in parts], ignore_index=True)
        union = union.dropna() if union.notna().all(axis=1).any() else union.fillna(union.median())
        reference = union.sample(min(len(union), 500), random_state=0)
        self.reference_features_ = reference.set_axis([f"reference-{i}" for i in range(len(reference))])
        return self

    def predict_as(self, features: pd.DataFrame, name: str) -> np.ndarray:
        """What source `name` would measure for these rows, in the metric's unit."""
        return np.asarray(self.models_[name].predict(pd.DataFrame(features)[self.columns_of_[name]]), dtype="float64")


def fit_sources(sources: list[str], metric: str, columns: list[str], tables: dict[str, pd.DataFrame] | None = None,
                algorithm: str = SOURCE_ALGORITHM) -> SourceModels:
    """One `algorithm` model per source target, fitted on its full table (`tables` overrides reading them)."""
    from perfpred.model.pooled import _table

    column = schema.metric_column(metric)
    parts = []
    for name in sources:
        table = tables[name] if tables is not None and name in tables else _table(name, metric)
        parts.append((name, table, table[column].to_numpy("float64")))
    return SourceModels(metric, algorithm).fit_tables(parts, columns)


def default_sources(target: str, metric: str, descriptor: dict[str, float]) -> list[str]:
    """The sources `adapt` learns from when none are named: perfpred.model.pooled.same_kind_sources."""
    from perfpred.model.pooled import same_kind_sources

    return same_kind_sources(target, metric, descriptor)


def source_predictions(model, features: pd.DataFrame) -> np.ndarray:
    """log of what each source target would measure (SourceModels), one column per source (rows x sources)."""
    return np.column_stack([np.log(model.predict_as(features, name)) for name in model.targets_])


def throughput(descriptor: dict[str, float]) -> float:
    """Compute units x clock (GPU when it has CUDA cores, else CPU): what the zero-shot level scales with."""
    if descriptor["cuda_cores"] > 0:
        return descriptor["cuda_cores"] * descriptor["gpu_max_clock_mhz"]
    return max(descriptor["cpu_cores"] * descriptor["cpu_max_clock_mhz"], 1.0)


class AdaptedRegressor(*_base_classes()):
    """Predicts a new target from fitted source models (SourceModels), its descriptor, and k measured rows."""

    def __init__(self, source_model, descriptor: dict[str, float], use_residuals: bool = True):
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
        self.linear_ = self.residuals_ = self.knots_ = self.mix_ = None
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
        if self.source_model.metric in ADDITIVE_METRICS and self.rows_ >= MIN_ROWS_FOR_RESIDUALS:
            self.mix_ = self._fit_mix(features, source_logs, measured_log)
        return self

    def _mix_inputs(self, features: pd.DataFrame, source_logs: np.ndarray) -> np.ndarray:
        """The mixture's columns, in the metric's unit: each source's prediction, the physical terms, a constant."""
        terms = [features[c].to_numpy("float64") for c in MIX_TERMS if c in features.columns]
        return np.column_stack([np.exp(source_logs), *terms, np.ones(len(features))])

    def _fit_mix(self, features: pd.DataFrame, source_logs: np.ndarray, measured_log: np.ndarray) -> dict:
        """Non-negative coefficients of the mixture by relative least squares, and a Gaussian process on its log residuals."""
        from scipy.optimize import nnls

        inputs = self._mix_inputs(features, source_logs)
        scale = np.abs(inputs).max(axis=0) + 1e-30  # columns of FLOPs and of milliseconds: one conditioning
        measured = np.exp(measured_log)
        coefficients, _ = nnls(inputs / scale / measured[:, None], np.ones(len(measured)))
        mix = {"coefficients": coefficients / scale, "residuals": None}
        if self.use_residuals:
            mix["residuals"] = self._residual_model(features, source_logs, measured_log - self._mix_log(mix, features, source_logs))
        return mix

    def _mix_log(self, mix: dict, features: pd.DataFrame, source_logs: np.ndarray) -> np.ndarray:
        """log of the mixture's prediction (floored: every coefficient may be 0 on a degenerate fit)."""
        predicted = self._mix_inputs(features, source_logs) @ mix["coefficients"]
        return np.log(np.maximum(predicted, 1e-12))

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
        mix = getattr(self, "mix_", None)  # models pickled before the mixture have none
        fitted = [model for model in (self.residuals_, mix and mix["residuals"]) if model is not None]
        residual_inputs = self._residual_inputs(features, source_logs) if fitted else None  # both GPs read them
        predicted = self._linear(source_logs)
        if self.residuals_ is not None:
            predicted = predicted + self.residuals_.predict(residual_inputs)
        if mix is not None:
            mixed = self._mix_log(mix, features, source_logs)
            if mix["residuals"] is not None:
                mixed = mixed + mix["residuals"].predict(residual_inputs)
            predicted = (predicted + mixed) / 2  # the geometric mean of the two maps
        return np.exp(predicted)


def calibration(measured: np.ndarray, rows: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The interval calibration of an adapted predictor: a Student-t interval of its out-of-fold log errors
    (perfpred.model.sweep.student_t_calibration).

    Chosen over split-conformal (what `perfpred train` uses, with hundreds of held-out rows) on draws 100-114 of
    every board and metric, apart from the benchmark's 0-19: 90 % intervals covered 91.5 / 91.4 / 91.7 % of the
    left-out board's other rows at k = 10 / 20 / 50, against 85.7 / 87.6 / 91.6 % for conformal, at widths (log
    high / low) 0.56 / 0.39 / 0.30 against 0.47 / 0.37 / 0.31; host toolchains 92.0 / 89.8 / 94.1 against 87.8 /
    86.1 / 92.7 %.
    """
    from perfpred.model import sweep

    return sweep.student_t_calibration(measured, rows, predicted)


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
