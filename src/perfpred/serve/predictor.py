"""A trained predictor of one (target, metric): point predictions and calibrated intervals from features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from perfpred.model import sweep
from perfpred.serve.domain import Domain


@dataclass
class Predictor:
    """What `perfpred.load_predictor` returns: `.predict(df)` in the metric's unit and `.predict_interval(df)`.

    `features` are the canonical feature columns the estimator reads; `calibration` holds quantiles of
    log(measured / predicted) at sweep.CALIBRATION_PROBABILITIES (split-conformal, held-out predictions);
    `domain` summarises the training rows (perfpred.serve.domain), None for a predictor stored without it.
    """

    estimator: object
    target: str
    metric: str
    column: str
    algorithm: str
    features: list[str]
    calibration: np.ndarray
    version: int | None = None
    #: per test domain ('sizes', 'architectures', 'synthetic'), the same quantiles from that domain's held-out rows
    domain_calibrations: dict[str, np.ndarray] | None = None
    domain: Domain | None = None
    #: a predictor that reads kernel terms (perfpred.kernels.predictor.TERM_COLUMNS) carries the target's kernel
    #: predictors and fusion rules, so that it computes them from a model's descriptor wherever it is loaded
    kernel_model: object | None = None
    kernel_rules: dict | None = None

    @property
    def kernel_columns(self) -> list[str]:
        """The kernel terms among the features it reads (none for a model-level predictor)."""
        from perfpred.kernels.predictor import GROUP_COLUMNS, TERM_COLUMNS

        return [c for c in self.features if c in TERM_COLUMNS + GROUP_COLUMNS]

    def kernel_terms(self, graph, input_width: int | None = None) -> dict[str, float]:
        """The kernel terms on this target of a parsed Keras descriptor (perfpred.features.descriptors.Graph) or an
        ONNX file (its path: perfpred.kernels.onnx_kernels), under this predictor's own fusion rules."""
        from perfpred.kernels import detector

        if getattr(self, "kernel_model", None) is None:  # versions stored before kernel terms existed
            raise ValueError(f"{self.target}-{self.metric} predictor ({self.algorithm}) reads {self.kernel_columns} "
                             "but carries no kernel predictors: retrain it with `perfpred train`")
        return self.kernel_model.term_features(detector.detect_with_rules(graph, self.kernel_rules or {}, input_width))

    def _features(self, table: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.features if c not in table.columns]
        if missing:
            raise ValueError(
                f"{self.target}-{self.metric} predictor needs feature columns {missing}, missing from the input "
                f"(it reads {', '.join(self.features)})"
                + (f"; the kernel terms come from the model's descriptor: `perfpred kernels MODEL --target {self.target} "
                   "--json`, or predict from the descriptor" if set(missing) & set(self.kernel_columns) else "")
            )
        features = table[self.features].apply(pd.to_numeric, errors="coerce").astype("float64")
        incomplete = features.columns[features.isna().any()].tolist()
        if incomplete:
            rows = features.index[features.isna().any(axis=1)].tolist()[:5]
            raise ValueError(
                f"{self.target}-{self.metric} predictor: feature columns {incomplete} are empty or not numeric "
                f"in rows {rows}; compute the features (`perfpred features`) before predicting"
            )
        return features

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """Point predictions in the metric's unit (e.g. latency_ms), one per row."""
        return np.asarray(self.estimator.predict(self._features(table)), dtype="float64")

    def predict_interval(self, table: pd.DataFrame, level: float = 0.9, domain: str | None = None,
                         widen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated (low, high) bounds that hold the measurement with probability `level`, per row.

        `domain` ('sizes': a trained architecture at a new input size, 'architectures': a new member of a known
        family, 'synthetic': a new synthetic CNN) calibrates on that domain's held-out rows; None on random splits.
        With `widen` (and a stored training domain) the log-width grows with how far a row lies outside it.
        """
        predicted = self.predict(table)
        widening = self.check_domain(table)["widening"].to_numpy("float64") if widen else np.ones(len(predicted))
        return self._bounds(predicted, widening, level, domain)

    def answer(self, table: pd.DataFrame, level: float = 0.9, calibration: str | None = None) -> pd.DataFrame:
        """Per row: the point prediction (`column`), its widened `level` bounds (`<column>_low`, `<column>_high`),
        `in_domain` and `outside`; the model and the domain check run once (predict and recommend call this).
        `calibration`: None (random splits) or a key of `domain_calibrations` ('families': a family never seen)."""
        predicted = self.predict(table)
        checked = self.check_domain(table)
        low, high = self._bounds(predicted, checked["widening"].to_numpy("float64"), level, calibration)
        return pd.DataFrame({self.column: predicted, f"{self.column}_low": low, f"{self.column}_high": high,
                             "in_domain": checked["in_domain"].to_numpy(), "outside": checked["outside"].to_numpy()},
                            index=table.index)

    def _bounds(self, predicted: np.ndarray, widening: np.ndarray, level: float, domain: str | None):
        """(low, high): the calibration's `level` factors, their log-width scaled by `widening`, around `predicted`."""
        calibration = self.calibration
        if domain is not None:
            known = getattr(self, "domain_calibrations", None) or {}  # versions trained before domains have none
            if domain not in known:
                raise ValueError(f"{self.target}-{self.metric} predictor has no interval calibration for domain {domain!r}: "
                                 f"it has {', '.join(known) or 'none'} (retrain with `perfpred train`)")
            calibration = known[domain]
        low, high = sweep.interval_factors(calibration, level)
        return predicted * low**widening, predicted * high**widening

    def check_domain(self, table: pd.DataFrame) -> pd.DataFrame:
        """Per row: in_domain, outside (the features beyond the training domain) and the interval widening."""
        features = self._features(table)
        if self.domain is None:  # stored before domains existed: nothing is known, nothing widened
            return pd.DataFrame({"in_domain": None, "outside": [[] for _ in range(len(features))], "widening": 1.0},
                                index=features.index)
        return self.domain.check(features)

    def __repr__(self) -> str:
        return (
            f"Predictor(target={self.target!r}, metric={self.metric!r}, algorithm={self.algorithm!r}, "
            f"version={self.version}, features={len(self.features)})"
        )
