"""A trained predictor of one (target, metric): point predictions and calibrated intervals from features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from perfpred.model import sweep
from perfpred.serve.domain import Domain

#: `calibration` that chooses per row (Predictor.answer): random splits for an architecture the training rows hold at
#: some input size, families never seen for any other. The registered host latency champions' random-split intervals
#: covered 7 of 15 networks in no zoo on TF (`python benchmarks/kernels_novel.py --champion`, 2026-12-01): a user's
#: own architecture is not a random split's test row.
AUTO = "auto"
#: `calibration` of the random splits' held-out rows (None means the same)
RANDOM = "random"
#: Features that name an architecture whatever its input size: its layer counts and its convolution and batch-norm
#: parameters (a dense head's parameters grow with the input size behind a Flatten).
ARCHITECTURE_COLUMNS: tuple[str, ...] = ("layers", "conv_layers", "bn_layers", "fc_layers", "conv_params", "bn_params")


def architecture_keys(table: pd.DataFrame) -> list[tuple | None]:
    """Per row, the architecture key (ARCHITECTURE_COLUMNS rounded); None where a column is missing or empty."""
    if not set(ARCHITECTURE_COLUMNS) <= set(table.columns):
        return [None] * len(table)
    values = table[list(ARCHITECTURE_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy("float64")
    return [None if np.isnan(row).any() else tuple(int(round(v)) for v in row) for row in values]


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
    #: architecture_keys of the training rows (None: stored before they were kept; AUTO then calibrates as random)
    architectures: frozenset | None = None

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
        `in_domain`, `outside` and `calibration` (the held-out rows its bounds come from); the model and the domain
        check run once (predict and recommend call this). `calibration`: None or RANDOM (random splits), a key of
        `domain_calibrations` ('families': a family never seen) or AUTO (per row: random splits for an architecture
        the training rows hold, families for any other; see `seen_architecture`)."""
        predicted = self.predict(table)
        checked = self.check_domain(table)
        widening = checked["widening"].to_numpy("float64")
        if calibration == AUTO:
            chosen = np.where(self.seen_architecture(table), RANDOM, self._unseen_calibration())
        else:
            chosen = np.full(len(predicted), calibration or RANDOM, dtype=object)
        low, high = np.empty(len(predicted)), np.empty(len(predicted))
        for name in set(chosen):
            rows = chosen == name
            low[rows], high[rows] = self._bounds(predicted[rows], widening[rows], level, name)
        return pd.DataFrame({self.column: predicted, f"{self.column}_low": low, f"{self.column}_high": high,
                             "in_domain": checked["in_domain"].to_numpy(), "outside": checked["outside"].to_numpy(),
                             "calibration": chosen.astype(str)}, index=table.index)

    def seen_architecture(self, table: pd.DataFrame) -> np.ndarray:
        """Per row: whether its architecture (architecture_keys: layer counts, convolution and batch-norm parameters)
        is among the training rows', at any input size. True for every row of a predictor stored without them."""
        known = getattr(self, "architectures", None)
        if known is None:
            return np.ones(len(table), dtype=bool)
        return np.array([key is not None and key in known for key in architecture_keys(table)], dtype=bool)

    def _unseen_calibration(self) -> str:
        """What AUTO calibrates an unseen architecture on: families never seen, if this predictor was evaluated so."""
        from perfpred.model import domains

        return domains.FAMILIES if domains.FAMILIES in (getattr(self, "domain_calibrations", None) or {}) else RANDOM

    def _bounds(self, predicted: np.ndarray, widening: np.ndarray, level: float, domain: str | None):
        """(low, high): the calibration's `level` factors, their log-width scaled by `widening`, around `predicted`."""
        calibration = self.calibration
        if domain not in (None, RANDOM):
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
