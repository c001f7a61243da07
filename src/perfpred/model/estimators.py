"""Regression pipelines built from conf/algorithm/ and the training table of one (target, metric)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from perfpred import config
from perfpred.data import schema
from perfpred.model import fitcache

#: Fewer rows than this leave no meaningful 80/20 split.
MIN_ROWS = 10


def regression_pipeline(
    regressor,
    log_features: bool = True,
    log_target: bool = True,
    poly_degree: int = 0,
    scale: bool = True,
    ratios: list[str] | None = None,
    drop: list[str] | None = None,
    clip_margin: float | None = 0.7,
    target_offset: float = 0.0,
):
    """A scikit-learn pipeline: ratio features, log1p of the features, polynomial terms, scaling, regressor, log of the target.

    Features (counts of parameters, FLOPs, activations) span six orders of magnitude, and so do the
    measurements: logarithms make relative errors, which MAPE scores, the ones the regressor minimises.
    `ratios` ("flops/layers": work per layer) and `drop` (columns left out) shape the feature set.
    `clip_margin` clips each (logged) feature to its training range widened by that much (0.7: about
    2x beyond the smallest and largest value seen; None: no clip), so polynomial terms and networks
    extrapolate to an unseen family at most as far as a model twice as large as any measured.
    `target_offset` takes a constant floor off the log target (see LogTargetRegressor).
    """
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, PolynomialFeatures, StandardScaler

    steps = []
    if ratios or drop:
        steps.append(FeatureRatios(list(ratios or []), list(drop or [])))
    if log_features:
        steps.append(FunctionTransformer(np.log1p, feature_names_out="one-to-one"))
    if clip_margin is not None:
        steps.append(FeatureRange(clip_margin))
    if poly_degree and poly_degree > 1:
        steps.append(PolynomialFeatures(degree=poly_degree, include_bias=False))
    if scale:
        steps.append(StandardScaler())
    steps.append(regressor)
    pipeline = make_pipeline(*steps)
    if log_target:
        return LogTargetRegressor(pipeline, offset=target_offset)
    return pipeline


def _base_classes():
    from sklearn.base import BaseEstimator, RegressorMixin

    return RegressorMixin, BaseEstimator  # the mixin first: scikit-learn reads its tags (is_regressor) from it


def _transformer_classes():
    from sklearn.base import BaseEstimator, TransformerMixin

    return TransformerMixin, BaseEstimator


class FeatureRatios(*_transformer_classes()):
    """Append ratio columns `"a/b"` (a / max(b, 1)) to a feature DataFrame and leave out the `drop` columns.

    Ratios whose columns a table lacks (the Nano memory rows have four features) are skipped, so one
    configuration serves every table. Ratios say what counts alone do not: FLOPs per layer is the work
    each GPU kernel gets, FLOPs per parameter the arithmetic intensity, neurons per FLOP the share of
    convolution work among all operations.
    """

    def __init__(self, ratios: list[str] | None = None, drop: list[str] | None = None):
        self.ratios = ratios
        self.drop = drop

    def fit(self, features: pd.DataFrame, target=None):
        """Check the ratio names and keep those whose columns the features have."""
        columns = list(features.columns)
        self.feature_names_in_ = np.asarray(columns, dtype=object)
        self.pairs_ = []
        for ratio in self.ratios or []:
            numerator, _, denominator = str(ratio).partition("/")
            unknown = [c for c in (numerator, denominator) if c not in schema.FEATURE_COLUMNS]
            if unknown:
                raise ValueError(
                    f"feature ratio {ratio!r} names {unknown}, not canonical features; use two of "
                    f"{', '.join(schema.FEATURE_COLUMNS)} as 'numerator/denominator'"
                )
            if numerator in columns and denominator in columns:
                self.pairs_.append((numerator, denominator))
        self.drop_ = [c for c in self.drop or [] if c in columns]
        return self

    def transform(self, features: pd.DataFrame) -> pd.DataFrame:
        """The features with the ratio columns added and the dropped ones removed."""
        ratio_columns = {f"{a}/{b}": features[a].to_numpy("float64") / np.maximum(features[b].to_numpy("float64"), 1.0)
                         for a, b in self.pairs_}
        return pd.concat([features.drop(columns=self.drop_), pd.DataFrame(ratio_columns, index=features.index)], axis=1)

    def get_feature_names_out(self, input_features=None):
        """Column names after the transform."""
        names = [c for c in (input_features if input_features is not None else self.feature_names_in_) if c not in self.drop_]
        return np.asarray(names + [f"{a}/{b}" for a, b in self.pairs_], dtype=object)


class FeatureRange(*_transformer_classes()):
    """Clip each feature column to its training [min - margin, max + margin]."""

    def __init__(self, margin: float = 0.7):
        self.margin = margin

    def fit(self, features, target=None):
        """Remember each column's training range."""
        values = np.asarray(features, dtype="float64")
        self.low_ = np.nanmin(values, axis=0) - self.margin
        self.high_ = np.nanmax(values, axis=0) + self.margin
        if hasattr(features, "columns"):
            self.feature_names_in_ = np.asarray(list(features.columns), dtype=object)
        return self

    def transform(self, features):
        """The features clipped to the widened training range (a DataFrame stays a DataFrame)."""
        clipped = np.clip(np.asarray(features, dtype="float64"), self.low_, self.high_)
        if hasattr(features, "columns"):
            return pd.DataFrame(clipped, columns=features.columns, index=features.index)
        return clipped

    def get_feature_names_out(self, input_features=None):
        """Column names are unchanged."""
        return np.asarray(input_features if input_features is not None else self.feature_names_in_, dtype=object)


class LogTargetRegressor(*_base_classes()):
    """Fit a regressor on log(y - offset * min(y_train)); predictions are clipped to the training range widened by `margin`.

    The clip keeps an extrapolating model (an unseen family, an input size beyond the table) from
    predicting a latency e**40 times the largest one measured. `offset` (a fraction of the smallest
    training value) takes a constant floor off the target, such as the runtime's own memory, so that
    what is left scales with the features.
    """

    def __init__(self, regressor, margin: float = 4.0, offset: float = 0.0):
        self.regressor = regressor
        self.margin = margin
        self.offset = offset

    @fitcache.shared  # an ensemble's member refits what its own algorithm's job fitted
    def fit(self, features, target):
        """Fit on the logarithm of a positive target less the offset."""
        from sklearn.base import clone

        if not 0.0 <= float(self.offset) < 1.0:
            raise ValueError(f"target_offset must be in [0, 1) (a fraction of the smallest training value), got {self.offset}")
        target = np.asarray(target, dtype="float64")
        self.shift_ = float(self.offset) * target.min()
        log_target = np.log(target - self.shift_)
        self.regressor_ = clone(self.regressor).fit(features, log_target)
        self.log_range_ = (log_target.min() - np.log(self.margin), log_target.max() + np.log(self.margin))
        return self

    def predict(self, features) -> np.ndarray:
        """Predictions in the target's unit."""
        return self.shift_ + np.exp(np.clip(self.regressor_.predict(features), *self.log_range_))


class BaselineRatioRegressor(*_base_classes()):
    """Learn the ratio of the measured figure to a linear prior on a few features, not the figure itself.

    The prior is a roofline in miniature (latency: a*FLOPs + b*activations + e*layers + c, every coefficient
    >= 0, least squares of the relative error on the training rows): time grows with arithmetic, with memory
    traffic and with the layers dispatched. The wrapped
    regressor learns how far each model sits from it, a factor of order one that it keeps within the
    range it saw; a model beyond the training rows (a family never seen, a synthetic CNN with a few huge
    layers) gets the prior's linear extrapolation times a plausible factor instead of the figure of
    the nearest training row, which is all a tree ensemble can return.
    """

    def __init__(self, regressor, columns: list[str], kernel_columns: list[str] | None = None):
        self.regressor = regressor
        self.columns = columns
        self.kernel_columns = kernel_columns

    def _design(self, features: pd.DataFrame) -> np.ndarray:
        columns = list(getattr(self, "columns_", self.columns))  # versions pickled before kernel_columns: columns
        missing = [c for c in columns if c not in features.columns]
        if missing:
            raise ValueError(f"the baseline's features {missing} are not among this table's complete features "
                             f"{list(features.columns)}: set the metric's `baseline` in conf/metric/ to columns it has")
        return np.column_stack([features[columns].to_numpy("float64"), np.ones(len(features))])

    def _prior(self, features: pd.DataFrame) -> np.ndarray:
        return np.maximum(self.prior_.predict(self._design(features)), self.floor_)

    def fit_prior(self, features: pd.DataFrame, target) -> BaselineRatioRegressor:
        """Fit the prior alone: non-negative least squares on the `columns` and a constant, of the relative error.

        Each row weighs 1 / measured**2, so a 30 us network counts as much as a 30 ms one: with plain least
        squares the largest rows set every coefficient and the prior of a network near the runtime's fixed costs
        (a small synthetic CNN) was off by 2-4x, which the regressor on the ratio could not undo. On the selection
        seeds 1000-1019, with `layers` added to the latency baseline, svr's champion score went 15.42 -> 13.13
        (host-cpu-onnxruntime), 18.76 -> 15.59 (tflite), 14.31 -> 12.91 (tf), its leave-family-out MAPE 197 ->
        23 %, 418 -> 36 %, 311 -> 33 %; the Jetson boards' latency stayed within 0.1 of their scores.
        """
        from sklearn.linear_model import LinearRegression

        target = np.asarray(target, dtype="float64")
        if not (target > 0).all():
            raise ValueError("the baseline prior is fitted to positive figures only (a row has a measured value <= 0)")
        # the kernel terms join the prior where the rows carry them (an algorithm with `kernel_terms`)
        self.columns_ = list(self.columns) + [c for c in self.kernel_columns or [] if c in features.columns
                                              and c not in self.columns]
        self.prior_ = LinearRegression(positive=True, fit_intercept=False).fit(self._design(features), target,
                                                                              sample_weight=target ** -2.0)
        self.floor_ = 1e-3 * float(target.min())  # a prior of 0 (every coefficient 0) would divide by 0
        return self

    @fitcache.shared  # an ensemble's member refits what its own algorithm's job fitted
    def fit(self, features: pd.DataFrame, target):
        """Fit the prior, then the regressor on measured / prior."""
        from sklearn.base import clone

        target = np.asarray(target, dtype="float64")
        self.fit_prior(features, target)
        self.regressor_ = clone(self.regressor).fit(features, target / self._prior(features))
        return self

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Prior times the learnt factor, in the target's unit."""
        return self._prior(features) * np.asarray(self.regressor_.predict(features), dtype="float64")


def _metric_columns(metric: str, key: str) -> list[str] | None:
    """A list of feature columns in conf/metric/<metric>.yaml, None where it has none."""
    columns = config.group_option("metric", metric).get(key)
    return [str(c) for c in columns] if columns else None


def metric_baseline(metric: str) -> list[str] | None:
    """The features of a metric's linear prior (conf/metric/<metric>.yaml `baseline`), None if it has none."""
    return _metric_columns(metric, "baseline")


def metric_kernel_baseline(metric: str) -> list[str] | None:
    """The kernel terms a metric's prior adds where the rows carry them (conf/metric/<metric>.yaml `kernel_baseline`)."""
    return _metric_columns(metric, "kernel_baseline")


def metric_option(metric: str, key: str, default=None):
    """One setting of conf/metric/<metric>.yaml (`default` where it has none)."""
    value = config.group_option("metric", metric).get(key)
    return default if value is None else value


def build(algorithm_cfg, baseline: list[str] | None = None, kernel_baseline: list[str] | None = None) -> object:
    """Instantiate the estimator of an algorithm config (its `estimator` node, built by Hydra from `_target_`).

    With a metric's `baseline` and an algorithm that sets `ratio_to_baseline`, it learns the ratio to that prior.
    """
    from hydra.utils import instantiate

    estimator = instantiate(algorithm_cfg["estimator"], _convert_="all")
    if baseline and algorithm_cfg.get("ratio_to_baseline", False):
        return BaselineRatioRegressor(estimator, list(baseline), kernel_baseline)
    return estimator


def measurement_table_path(target: str):
    """Where the canonical measurement table of a target lives."""
    return config.path("measurements") / f"{target}.parquet"


def training_table(target: str, metric: str) -> pd.DataFrame:
    """The rows of a target's table that have the metric; errors name what exists when something is missing."""
    from perfpred.data.measurements import read_canonical

    config.target_config(target)  # unknown target -> error listing the known ones
    column = schema.metric_column(metric)
    path = measurement_table_path(target)
    if not path.exists():
        have = sorted(p.stem for p in path.parent.glob("*.parquet")) if path.parent.exists() else []
        raise FileNotFoundError(
            f"target {target!r} has no measurements ({path} does not exist); targets with measurements: "
            f"{', '.join(have) or 'none'} (run `dvc repro` or `perfpred import`/`perfpred measure` first)"
        )
    table = read_canonical(path)
    table = table[table[column].notna() & (table[column] > 0)].reset_index(drop=True)
    if table.empty:
        have = [m for m, c in schema.METRIC_COLUMNS.items() if read_canonical(path)[c].notna().any()]
        raise ValueError(f"target {target!r} has no {metric} measurements in {path}: it has {', '.join(have) or 'none'}")
    if len(table) < MIN_ROWS:
        raise ValueError(
            f"target {target!r} has only {len(table)} {metric} rows in {path}: at least {MIN_ROWS} are needed "
            "for an 80/20 split"
        )
    return table


def feature_columns(table: pd.DataFrame, kernel_groups: bool = False) -> list[str]:
    """The canonical features that every row of this table has (the Nano memory rows lack some), then the kernel
    terms (perfpred.kernels.predictor.TERM_COLUMNS) where `with_kernel_terms` gave every row them, and with
    `kernel_groups` the kernel sums per group (GROUP_COLUMNS, what the `kernels` algorithm reads)."""
    from perfpred.kernels.predictor import GROUP_COLUMNS, TERM_COLUMNS

    canonical = [c for c in schema.FEATURE_COLUMNS if table[c].notna().all()]
    kernel = TERM_COLUMNS + (GROUP_COLUMNS if kernel_groups else ())
    return canonical + [c for c in kernel if c in table.columns and table[c].notna().all()]


def with_kernel_terms(table: pd.DataFrame, target: str) -> pd.DataFrame:
    """The table with each model's kernel terms on the target (written by `perfpred kernel-train`) joined on
    (model, input_width); unchanged for a target without kernel predictors. A row whose model has no terms
    (no descriptor in the zoo) leaves the columns incomplete, so `feature_columns` does not offer them."""
    from perfpred.kernels import store
    from perfpred.kernels.predictor import GROUP_COLUMNS, TERM_COLUMNS

    path = store.features_path(target)
    if not path.exists():
        return table
    columns = TERM_COLUMNS + GROUP_COLUMNS
    terms = pd.read_parquet(path)
    missing = [c for c in columns if c not in terms.columns]
    if missing:
        raise ValueError(f"{path} lacks the kernel terms {missing}: written by an older perfpred, run `perfpred kernel-train`")
    terms = terms[["model", "input_width", *columns]].copy()
    terms["input_width"] = terms["input_width"].astype(table["input_width"].dtype)
    joined = table.drop(columns=[c for c in columns if c in table.columns]).merge(
        terms, on=["model", "input_width"], how="left", validate="many_to_one")
    return joined.set_axis(table.index)


class KernelOverhead(*_base_classes()):
    """The `kernels` algorithm: a model's latency as the sum of its kernels' predicted latencies plus the overhead a
    model pays beyond them (nn-Meter's method), fitted on the training rows.

    latency = sum_g a_g * kernel_<g>_ms + b * kernel_count + c * kernel_read_mb + d over the kind groups g of
    perfpred.kernels.predictor.KIND_GROUPS, every coefficient >= 0, least squares on relative error, each a_g shrunk
    toward one common factor by a strength chosen over `folds` random folds of the training rows
    (predictor.fit_overhead_shrunk). The kernel predictors behind the terms learnt from single-kernel measurements
    only, so a seed's test rows taught this algorithm nothing but through these coefficients. It reads only the
    kernel terms of the features it is given. `call_ms`: d pinned at what calling a one-kernel model costs on the
    target (perfpred.kernels.predictor.KernelModel.call_ms, set by `perfpred train`), as the kernel model's own
    overhead has it; None fits d with the rest. On the selection seeds 1000-1019 pinning lowered the champion score
    of `kernels` from 12.36 to 12.15 (TF), 16.78 to 16.67 (TFLite), 18.13 to 17.70 (ONNX Runtime), and of
    `blend_kernels` from 10.28 / 13.09 / 13.33 to 10.26 / 13.02 / 13.18 (2026-11-30).
    """

    def __init__(self, folds: int = 5, seed: int = 0, call_ms: float | None = None, count_mode: str | None = None):
        self.folds = folds
        self.seed = seed
        self.call_ms = call_ms
        self.count_mode = count_mode

    def _terms(self, features: pd.DataFrame) -> np.ndarray:
        """predictor.model_terms' layout (group sums, count, MB read, constant); under the count mode "dispatch"
        (KernelModel.count_mode, set by `perfpred train` with call_ms) the kernels priced by their chains as the kernel
        model prices them: no fitted cost per kernel, kernel_dispatch_ms in the constant pinned at call_ms."""
        from perfpred.kernels.predictor import GROUP_COLUMNS, priced_by_dispatch

        columns = list(GROUP_COLUMNS) + ["kernel_count", "kernel_read_mb"]
        dispatch = getattr(self, "count_mode", None) == "dispatch" and bool(self.call_ms)
        wanted = columns + (["kernel_dispatch_ms"] if dispatch else [])
        missing = [c for c in wanted if c not in getattr(features, "columns", [])]
        if missing:
            raise ValueError(f"the kernels algorithm reads the kernel terms {wanted}; {missing} are not among the "
                             "features: the target needs kernel predictors (`perfpred kernel-train`)")
        terms = np.column_stack([features[columns].to_numpy("float64"), np.ones(len(features))])
        return priced_by_dispatch(terms, features["kernel_dispatch_ms"], self.call_ms) if dispatch else terms

    @fitcache.shared  # an ensemble's member refits what its own algorithm's job fitted
    def fit(self, features: pd.DataFrame, target):
        """The non-negative coefficients, per-group factors shrunk by cross-validation on the training rows."""
        from perfpred.kernels.predictor import fit_overhead_shrunk

        target = np.asarray(target, dtype="float64")
        folds = np.random.default_rng(self.seed).permutation(len(target)) % max(int(self.folds), 1)
        self.coefficients_ = fit_overhead_shrunk(self._terms(features), target, folds, constant_ms=self.call_ms)
        return self

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Predicted latency in ms."""
        return np.maximum(self._terms(features) @ self.coefficients_, 1e-3)


class GeometricBlend(*_base_classes()):
    """The weighted geometric mean of its members' predictions, each member fitted on its own columns.

    `members`: (name, estimator, columns left out) triples; a member never sees the columns it leaves out (a
    model-level ensemble that reads the kernel sums but not the per-group sums, beside the `kernels` algorithm that
    reads the group sums). A geometric mean averages relative errors, which MAPE scores: two members 20 % too fast
    and 20 % too slow give the truth, not 2 % too slow.
    """

    def __init__(self, members: list, weights: list[float] | None = None):
        self.members = members
        self.weights = weights

    def _weights(self) -> np.ndarray:
        weights = np.ones(len(self.members)) if self.weights is None else np.asarray(self.weights, dtype="float64")
        if len(weights) != len(self.members) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(f"GeometricBlend: {len(self.members)} members need as many non-negative weights, "
                             f"not {list(weights)}")
        return weights / weights.sum()

    @staticmethod
    def _columns(features: pd.DataFrame, dropped: list[str]) -> pd.DataFrame:
        """The features a member reads: all but the ones it leaves out."""
        return features.drop(columns=[c for c in dropped if c in features.columns])

    def fit(self, features: pd.DataFrame, target):
        """Fit every member on the features it reads."""
        from sklearn.base import clone

        self.weights_ = self._weights()
        self.fitted_ = [(name, clone(estimator).fit(self._columns(features, dropped), target), list(dropped))
                        for name, estimator, dropped in self.members]
        return self

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """exp(sum_i w_i log(prediction_i)), in the metric's unit."""
        logs = [np.log(np.maximum(np.asarray(estimator.predict(self._columns(features, dropped)), dtype="float64"), 1e-12))
                for _, estimator, dropped in self.fitted_]
        return np.exp(np.average(np.vstack(logs), axis=0, weights=self.weights_))
