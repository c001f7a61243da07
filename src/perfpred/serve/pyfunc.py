"""The MLflow pyfunc wrapper of a Predictor (kept apart: importing it imports mlflow).

Served (`mlflow models serve`), it answers a DataFrame of canonical feature columns with one row per
input: the point prediction (e.g. `latency_ms`), `in_domain` and `outside` (perfpred.serve.domain);
with a `level` param (e.g. `"params": {"level": 0.9}`) also `<column>_low` and `<column>_high`.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd

#: the served model's `level` param when none is sent: no interval
NO_INTERVAL = 0.0


class PredictorModel(mlflow.pyfunc.PythonModel):
    """Serves a perfpred Predictor: canonical feature columns in, predictions (and intervals on request) out."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Point predictions in the metric's unit, the domain check, and `level` interval bounds when asked."""
        predictor = self.predictor
        column = predictor.column
        level = float((params or {}).get("level") or NO_INTERVAL)
        answer = predictor.answer(model_input, level if level != NO_INTERVAL else 0.9)
        answer["outside"] = [",".join(names) for names in answer["outside"]]
        order = [column, "in_domain", "outside"] + ([f"{column}_low", f"{column}_high"] if level != NO_INTERVAL else [])
        return answer[order].reset_index(drop=True)
