"""Fits shared by the jobs of one `perfpred train` run: an estimator whose fit is slow and deterministic fits once.

An ensemble refits its members on the same rows as the members' own jobs (`pooled_ens` holds `pooled_svr`), so
over one run the same fit (same class, parameters, rows, order, values) comes back for every seed, family fold and
test domain. `perfpred train` opens a cache folder for the run (`scoped`) and removes it at the end; estimators
look their fitted state up by a hash of what their fit reads (`lookup`, `keep`). Nothing outlives the run, so a
changed table or code can never be read back; outside a run (no folder open) nothing is cached.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from perfpred.atomic import replace_file

#: The environment variable that names the run's cache folder (inherited by the sweep's worker processes).
ENV = "PERFPRED_FIT_CACHE"


@contextmanager
def scoped(parent: Path | None = None) -> Iterator[Path]:
    """A cache folder for the fits of one run, named in the environment while the run lasts, then removed."""
    if os.environ.get(ENV):  # an enclosing run has one: share it
        yield Path(os.environ[ENV])
        return
    folder = Path(tempfile.mkdtemp(prefix="perfpred-fits-", dir=parent))
    os.environ[ENV] = str(folder)
    try:
        yield folder
    finally:
        os.environ.pop(ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def key(estimator, features: pd.DataFrame, target) -> str | None:
    """The hash of an estimator's class, parameters and training rows (index, columns, values); None outside a run."""
    if not os.environ.get(ENV):
        return None
    digest = hashlib.sha256()
    digest.update(f"{type(estimator).__module__}.{type(estimator).__qualname__}".encode())
    digest.update(repr(sorted(estimator.get_params(deep=False).items())).encode())
    digest.update(repr([(str(c), str(t)) for c, t in features.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(features, index=True).to_numpy().tobytes())
    digest.update(np.ascontiguousarray(np.asarray(target, dtype="float64")).tobytes())
    return digest.hexdigest()


def _path(digest: str) -> Path:
    return Path(os.environ[ENV]) / f"{digest}.pkl"


def lookup(estimator, digest: str | None) -> bool:
    """Give `estimator` the fitted state kept under `digest`; False when there is none (then fit it and `keep`)."""
    if digest is None or not os.environ.get(ENV) or not _path(digest).exists():
        return False
    with open(_path(digest), "rb") as handle:
        estimator.__dict__.update(pickle.load(handle))
    return True


def keep(estimator, digest: str | None) -> None:
    """Keep the fitted state (the attributes ending in `_`) of `estimator` under `digest` for the run's later jobs."""
    if digest is None or not os.environ.get(ENV) or not Path(os.environ[ENV]).is_dir():
        return  # no run open, or a worker process that outlived the run that named the folder
    state = {name: value for name, value in vars(estimator).items() if name.endswith("_") and not name.startswith("_")}

    def write(path: str) -> None:
        with open(path, "wb") as handle:
            pickle.dump(state, handle, protocol=pickle.HIGHEST_PROTOCOL)

    replace_file(_path(digest), write)
