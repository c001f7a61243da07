"""perfpred: predict how fast a CNN runs, and how much memory and power it takes, on a hardware target.

The public API is imported lazily, so that `import perfpred` stays fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> module that defines it
_API = {
    "read_measurements": "perfpred.data.measurements",
    "read_manifest": "perfpred.zoo.build",
    "write_zoo": "perfpred.zoo.build",
    "describe": "perfpred.features.description",
    "measure_model": "perfpred.measure.stage",
    "measure_zoo": "perfpred.measure.stage",
    "load_predictor": "perfpred.serve.loader",
    "predict_model": "perfpred.serve.predict",
    "recommend_model": "perfpred.serve.recommend",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'perfpred' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_API))
