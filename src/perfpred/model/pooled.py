"""The pooled algorithm: one model over the union of the targets' tables of a metric, target descriptors and identity as inputs.

`PooledRegressor(target, metric)` is a scikit-learn estimator like the others of conf/algorithm/: `fit(X, y)` takes the
training rows of its own target and adds the rows of every other target that has a table for the metric (`sources`),
so `perfpred train algorithm=pooled` evaluates it on the target's rows by the same seed sweep and champion rule.
Splits stay by network across targets: a source row whose network is among the target's rows that `fit` was not
given (a seed's test rows, an unseen family) is left out, so no test network is in any target's training rows.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from perfpred.data import schema
from perfpred.kernels.predictor import GROUP_COLUMNS, TERM_COLUMNS
from perfpred.model import fitcache, hardware
from perfpred.model.estimators import _base_classes, with_kernel_terms

#: Kernel-term columns (perfpred.kernels): per target, so a source's are joined from its own kernel predictors.
KERNEL_COLUMNS: tuple[str, ...] = TERM_COLUMNS + GROUP_COLUMNS

#: Columns that name a network across tables (the Jetson files and the zoo describe the same CNN with the same numbers).
NETWORK_KEY: tuple[str, ...] = ("input_size", "params")


def network_keys(features: pd.DataFrame) -> pd.Series:
    """One hashable key per row that is equal for the same network (model at an input size) in every target's table."""
    rounded = features[list(NETWORK_KEY)].round(0).astype("float64")
    return pd.Series(list(map(tuple, rounded.to_numpy())), index=features.index)


@lru_cache(maxsize=32)
def _table(target: str, metric: str, kernel_terms: bool = False) -> pd.DataFrame:
    """A target's training table of the metric, read once; with `kernel_terms`, joined with its own kernel terms."""
    from perfpred.model import estimators

    if kernel_terms:
        return with_kernel_terms(_table(target, metric), target)
    return estimators.training_table(target, metric)


def targets_with_table(metric: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """The configured targets whose measurement table has at least 10 rows of the metric, `exclude` left out."""
    from perfpred import config
    from perfpred.model import estimators

    found = []
    for name in config.group_options("target"):
        if name in exclude or metric not in config.target_config(name).get("metrics", []):
            continue
        if not estimators.measurement_table_path(name).exists():
            continue
        try:
            _table(name, metric)
        except ValueError:  # too few rows of this metric: not a source
            continue
        found.append(name)
    return found


def held_out_keys(target: str, metric: str, training_features: pd.DataFrame) -> set:
    """Networks of the target's table that are not among the training rows: no source may teach them."""
    try:
        own = _table(target, metric)
    except (FileNotFoundError, ValueError, LookupError):  # a target without a table (adapt): nothing is held out
        return set()
    return set(network_keys(own)) - set(network_keys(training_features))


class PooledRegressor(*_base_classes()):
    """Gradient-boosted trees on log features + log hardware descriptor + one-hot target and toolchain, log target."""

    def __init__(self, target: str | None = None, metric: str = "latency", sources: list[str] | None = None,
                 n_estimators: int = 600, max_depth: int = 6, learning_rate: float = 0.05, subsample: float = 0.8,
                 colsample_bytree: float = 0.8, min_child_weight: float = 1.0, own_weight: float = 2.0,
                 random_state: int = 0, n_jobs: int = 1):
        self.target = target
        self.metric = metric
        self.sources = sources
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.own_weight = own_weight
        self.random_state = random_state
        self.n_jobs = n_jobs

    def default_sources(self) -> list[str]:
        """The sources when none are named: every other target with a table of the metric."""
        return targets_with_table(self.metric, (self.target,) if self.target else ())

    def source_rows(self, training_features: pd.DataFrame | None) -> list[tuple[str, pd.DataFrame, np.ndarray]]:
        """(name, features, measured) of each source target, without the networks held out of the own target."""
        column = schema.metric_column(self.metric)
        names = self.sources if self.sources is not None else self.default_sources()
        held = held_out_keys(self.target, self.metric, training_features) if self.target and training_features is not None else set()
        rows = []
        kernel_terms = training_features is not None and bool(set(training_features.columns) & set(KERNEL_COLUMNS))
        for name in names:
            if name == self.target:
                continue
            table = _table(name, self.metric, kernel_terms)  # with terms: each source's own, as the own rows have theirs
            if held:
                table = table[~network_keys(table).isin(held)]
            rows.append((name, table, table[column].to_numpy("float64")))
        return rows

    def fit(self, features: pd.DataFrame, target) -> PooledRegressor:
        """Fit on the own target's rows (weighted `own_weight`) and the sources' rows."""
        features = pd.DataFrame(features)
        parts = self.source_rows(features)
        if self.target is not None:
            parts.append((self.target, features, np.asarray(target, dtype="float64")))
        return self.fit_union(parts, list(features.columns))

    def fit_union(self, parts: list[tuple[str, pd.DataFrame, np.ndarray]], columns: list[str]) -> PooledRegressor:
        """Fit on (target name, features, measured) parts; `columns` are the features predictions will give."""
        from xgboost import XGBRegressor

        if not parts:
            raise ValueError(f"pooled {self.metric}: no target has a table to learn from (run `perfpred import` first)")
        self.columns_ = list(columns)
        self.targets_ = sorted({name for name, _, _ in parts})
        self.toolchains_ = sorted({hardware.toolchain(name) for name in self.targets_})
        self.descriptors_ = {name: hardware.descriptor(name) for name in self.targets_}
        self.toolchain_of_ = {name: hardware.toolchain(name) for name in self.targets_}  # predict reads no conf/
        designs, measured, weights = [], [], []
        for name, frame, values in parts:
            designs.append(self.design(frame, name))
            measured.append(np.log(values))
            weights.append(np.full(len(values), self.own_weight if name == self.target else 1.0))
        self.model_ = XGBRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth, learning_rate=self.learning_rate,
                                   subsample=self.subsample, colsample_bytree=self.colsample_bytree,
                                   min_child_weight=self.min_child_weight, random_state=self.random_state,
                                   n_jobs=self.n_jobs)
        self.model_.fit(np.vstack(designs), np.concatenate(measured), sample_weight=np.concatenate(weights))
        return self

    def design(self, frame: pd.DataFrame, name: str, descriptor: dict | None = None) -> np.ndarray:
        """The model's input for rows of one target: log1p features (NaN where a table lacks one), descriptor, one-hots."""
        features = np.column_stack([
            np.log1p(frame[c].to_numpy("float64")) if c in frame.columns else np.full(len(frame), np.nan)
            for c in self.columns_
        ])
        described = descriptor if descriptor is not None else self.descriptors_.get(name) or hardware.descriptor(name)
        hardware_values = np.log1p([described[f] for f in hardware.HARDWARE_FIELDS])
        toolchain = self.toolchain_of_.get(name) or hardware.toolchain(name)
        one_hot = [float(name == t) for t in self.targets_] + [float(toolchain == t) for t in self.toolchains_]
        fixed = np.concatenate([hardware_values, one_hot])
        return np.hstack([features, np.tile(fixed, (len(frame), 1))])

    def predict_as(self, features: pd.DataFrame, name: str, descriptor: dict | None = None) -> np.ndarray:
        """Predictions for rows on target `name` (a source, the own target, or a new one known by its descriptor)."""
        return np.exp(self.model_.predict(self.design(pd.DataFrame(features), name, descriptor)))

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Predictions on the own target, in the metric's unit."""
        if self.target is None:
            raise ValueError("a PooledRegressor without a target predicts with predict_as(features, target_name)")
        return self.predict_as(features, self.target)


def same_kind_sources(target: str, metric: str, descriptor: dict[str, float] | None = None) -> list[str]:
    """Every other target with a table of the metric on the same kind of device (GPU or CPU) as `target`, if there
    are two or more; else every other one. On the Jetson boards the CPU tables only added noise (AGX Xavier latency
    adapted from k = 20 rows: 9.8 % with them, 8.9 % without, 4 draws)."""
    available = targets_with_table(metric, exclude=(target,))
    is_gpu = (descriptor if descriptor is not None else hardware.descriptor(target))["cuda_cores"] > 0
    same_kind = [name for name in available if (hardware.descriptor(name)["cuda_cores"] > 0) == is_gpu]
    return same_kind if len(same_kind) >= 2 else available


class PooledSVR(PooledRegressor):
    """Support vector regression on the union of the targets' tables of a metric, target identity as input.

    Each target keeps its own linear prior on the metric's `baseline` features (as `svr` learns measured / prior:
    a Nano and an AGX Xavier differ by a factor of 3-5 in level) and its own floor (`target_offset`, a fraction of
    its smallest value, as LogTargetRegressor). What is pooled is the shape: one RBF SVR on the log of each row's
    ratio to its target's prior, over the scaled log features (with `svr`'s ratios and drops) and a one-hot of the
    target scaled by `identity_scale`: two rows of the same network on two targets are exp(-gamma * 2 *
    identity_scale**2) as similar as two rows of one target, so the sources teach what the own rows do not cover
    and the own rows set the level. Sources default to the other targets of the same kind of device
    (`same_kind_sources`); rows of networks a split holds out of the own target are left out of every source, and
    source rows lacking one of the own target's features are dropped.
    """

    def __init__(self, target: str | None = None, metric: str = "latency", sources: list[str] | None = None,
                 C: float = 10.0, epsilon: float = 0.02, gamma: float | str = "scale", tol: float = 0.01,
                 ratios: list[str] | None = None, drop: list[str] | None = None, baseline: list[str] | None = None,
                 target_offset: float = 0.0, identity_scale: float = 1.0, own_weight: float = 2.0,
                 kernel_baseline: list[str] | None = None):
        self.target = target
        self.metric = metric
        self.sources = sources
        self.C = C
        self.epsilon = epsilon
        self.gamma = gamma
        self.tol = tol
        self.ratios = ratios
        self.drop = drop
        self.baseline = baseline
        self.kernel_baseline = kernel_baseline
        self.target_offset = target_offset
        self.identity_scale = identity_scale
        self.own_weight = own_weight

    def default_sources(self) -> list[str]:
        """The other targets of the same kind of device (same_kind_sources)."""
        return same_kind_sources(self.target, self.metric)

    def _fit_level(self, frame: pd.DataFrame, values: np.ndarray) -> tuple:
        """One target's floor and prior: (shift, the `svr` prior fitted on values less the shift, or None)."""
        from perfpred.model.estimators import BaselineRatioRegressor

        shift = float(self.target_offset) * float(values.min())
        if not self.baseline:
            return shift, None
        kernel_baseline = getattr(self, "kernel_baseline", None)  # versions pickled before it have none
        return shift, BaselineRatioRegressor(None, list(self.baseline), kernel_baseline).fit_prior(frame, values - shift)

    def _level(self, name: str, frame: pd.DataFrame) -> tuple[float, np.ndarray]:
        shift, prior = self.levels_[name]
        return shift, np.ones(len(frame)) if prior is None else prior._prior(frame)

    def _features(self, frame: pd.DataFrame) -> np.ndarray:
        return np.log1p(self.ratios_.transform(frame[self.columns_]).to_numpy("float64"))

    def _svr_design(self, frame: pd.DataFrame, name: str) -> np.ndarray:
        identity = [self.identity_scale * float(name == other) for other in self.targets_]
        return np.hstack([self.scaler_.transform(self._features(frame)), np.tile(identity, (len(frame), 1))])

    @fitcache.shared  # pooled_ens's member refits what pooled_svr's own job fitted
    def fit(self, features: pd.DataFrame, target) -> PooledSVR:
        """Fit on the own target's rows (weighted `own_weight`) and the sources' complete rows."""
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVR

        from perfpred.model.estimators import FeatureRatios

        if self.target is None:
            raise ValueError("PooledSVR needs its own target (the one it predicts)")
        if not 0.0 <= float(self.target_offset) < 1.0:
            raise ValueError(f"target_offset must be in [0, 1) (a fraction of the smallest value), got {self.target_offset}")
        features = pd.DataFrame(features)
        self.columns_ = list(features.columns)
        parts = []
        for name, frame, values in self.source_rows(features):
            complete = frame.reindex(columns=self.columns_).notna().all(axis=1).to_numpy() & (values > 0)
            if complete.any():
                parts.append((name, frame.loc[complete, self.columns_], values[complete]))
        parts.append((self.target, features, np.asarray(target, dtype="float64")))
        self.targets_ = [name for name, _, _ in parts]
        self.ratios_ = FeatureRatios(list(self.ratios or []), list(self.drop or [])).fit(features)
        self.scaler_ = StandardScaler().fit(np.vstack([self._features(frame) for _, frame, _ in parts]))
        self.levels_ = {name: self._fit_level(frame, values) for name, frame, values in parts}
        designs, logs, weights = [], [], []
        for name, frame, values in parts:
            shift, scale = self._level(name, frame)
            designs.append(self._svr_design(frame, name))
            logs.append(np.log(np.maximum(values - shift, 1e-12) / scale))
            weights.append(np.full(len(values), self.own_weight if name == self.target else 1.0))
        logs_all = np.concatenate(logs)
        self.log_range_ = (logs[-1].min() - np.log(4.0), logs[-1].max() + np.log(4.0))  # LogTargetRegressor's margin
        self.model_ = SVR(C=self.C, epsilon=self.epsilon, gamma=self.gamma, tol=self.tol).fit(
            np.vstack(designs), logs_all, sample_weight=np.concatenate(weights))
        self.borrowed_rows_ = int(len(logs_all) - len(logs[-1]))
        return self

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Predictions on the own target, in the metric's unit."""
        frame = pd.DataFrame(features)
        shift, scale = self._level(self.target, frame)
        return shift + scale * np.exp(np.clip(self.model_.predict(self._svr_design(frame, self.target)), *self.log_range_))
