"""Borrow strength from other boards: a board's few memory rows, completed by what its sibling boards measured.

The memory of one network is strongly related across boards (Spearman 0.98 TX2 vs AGX Xavier on the 102
(network, input size) pairs both measured), and each board measured networks or input sizes the others
did not. `CrossBoardRegressor` maps each sibling's measurements onto this board (a line in log-log space,
fitted on the pairs both boards have among the training rows) and trains on this board's rows plus the
mapped sibling rows of networks it knows nothing about.

No sibling row tells about what an evaluation holds out: a sibling row is left out when its (network,
input size) is a row of this board's table that is not among the training rows, or when its network is in
this board's table but has no training row (an architecture held out whole). Networks are recognised by
width-independent features (parameters, layers), not by name.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perfpred.model.estimators import _base_classes

#: width-independent features that identify a network; with input_size they identify a row
IDENTITY = ("params", "layers")
#: fewer shared pairs than this leave the log-log line between two boards unreliable: that sibling is skipped
MIN_PAIRS = 20


def _keys(features: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    network = features[list(IDENTITY)].round().astype("int64").astype(str).agg("/".join, axis=1)
    return network, network + "@" + features["input_size"].round().astype("int64").astype(str)


class CrossBoardRegressor(*_base_classes()):
    """Fit `regressor` on this board's rows plus sibling boards' rows mapped onto it (see the module docstring).

    `siblings`: one DataFrame per sibling board, its feature columns and the measured `target`; `own`: this
    board's whole table (features), which tells which networks and rows an evaluation may be holding out.
    """

    def __init__(self, regressor, siblings: list[pd.DataFrame], own: pd.DataFrame):
        self.regressor = regressor
        self.siblings = siblings
        self.own = own

    def _borrowed(self, features: pd.DataFrame, target: np.ndarray) -> tuple[list[pd.DataFrame], list[np.ndarray]]:
        if not {*IDENTITY, "input_size"} <= set(features.columns):
            self.mappings_ = []
            return [], []
        own_network, own_row = _keys(self.own)
        train_network, train_row = _keys(features)
        trained = pd.Series(np.log(target), index=train_row.to_numpy()).groupby(level=0).mean()
        held_rows = set(own_row) - set(train_row)
        held_networks = set(own_network) - set(train_network)
        frames, targets = [], []
        self.mappings_ = []
        for sibling in self.siblings:
            if not set(features.columns) <= set(sibling.columns):
                continue
            network, row = _keys(sibling)
            shared = row.isin(trained.index).to_numpy()
            if shared.sum() < MIN_PAIRS:
                continue
            slope, intercept = np.polyfit(np.log(sibling["target"].to_numpy("float64")[shared]),
                                          trained.reindex(row[shared]).to_numpy(), 1)
            self.mappings_.append((float(slope), float(intercept), int(shared.sum())))
            keep = (~row.isin(held_rows) & ~network.isin(held_networks) & ~row.isin(trained.index)).to_numpy()
            frames.append(sibling.loc[keep, list(features.columns)])
            targets.append(np.exp(intercept + slope * np.log(sibling["target"].to_numpy("float64")[keep])))
        return frames, targets

    def fit(self, features: pd.DataFrame, target):
        """Fit on this board's rows and the mapped sibling rows."""
        from sklearn.base import clone

        target = np.asarray(target, dtype="float64")
        frames, targets = self._borrowed(features, target)
        self.borrowed_rows_ = int(sum(len(f) for f in frames))
        all_features = pd.concat([features, *frames], ignore_index=True) if frames else features
        all_target = np.concatenate([target, *targets]) if targets else target
        self.regressor_ = clone(self.regressor).fit(all_features, all_target)
        return self

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Predictions of the regressor fitted on both."""
        return np.asarray(self.regressor_.predict(features), dtype="float64")


def wrap(estimator, target: str, metric: str, table: pd.DataFrame, boards: list[str]):
    """`estimator` wrapped to borrow from the other `boards`' tables of `metric` (unchanged if `target` is not a board)."""
    from perfpred.data import schema
    from perfpred.model import estimators

    if target not in boards:
        return estimator
    column = schema.metric_column(metric)
    siblings = []
    for board in boards:
        if board == target:
            continue
        try:
            sibling = estimators.training_table(board, metric)
        except (FileNotFoundError, ValueError):  # a sibling without this metric's table lends nothing
            continue
        siblings.append(sibling[[c for c in schema.FEATURE_COLUMNS if sibling[c].notna().all()]].assign(target=sibling[column]))
    if not siblings:
        return estimator
    return CrossBoardRegressor(estimator, siblings, table[list(schema.FEATURE_COLUMNS)])
