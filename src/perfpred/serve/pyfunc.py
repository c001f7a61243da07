"""The MLflow pyfunc wrapper of a Predictor (kept apart: importing it imports mlflow)."""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np


class PredictorModel(mlflow.pyfunc.PythonModel):
    """Serves a perfpred Predictor: a DataFrame of canonical feature columns -> point predictions."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor

    def predict(self, context, model_input, params=None) -> np.ndarray:
        """Point predictions in the metric's unit."""
        return self.predictor.predict(model_input)
