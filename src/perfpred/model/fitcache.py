"""Fits shared by the jobs of one `perfpred train` run: an estimator whose fit is slow and deterministic fits once.

An ensemble refits its members on the same rows as the members' own jobs (`ens` holds `svr` and `xgb`, `pooled_ens`
holds `pooled_svr`, `blend_kernels` holds `ens_kernels` and `kernels`), so over one run the same fit (same class,
parameters, rows, order, values) comes back for every seed, family fold and test domain. `perfpred train` opens a
cache folder for the run (`scoped`) and removes it at the end; an estimator whose `fit` is decorated with `shared`
looks its fitted state up by a hash of what its fit reads (`key`: class, parameters, rows). Only the fits of an
algorithm that is a member of another one in the run are kept (`want`, called by train.evaluate): the others would
be written for nothing (a random forest's fits take about 2 GB over the train stage). Nothing outlives the run, so a
changed table or code can never be read back; outside a run (no folder open) nothing is cached.
"""

from __future__ import annotations

import functools
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
#: The file of the run's folder that lists the estimators whose fits are kept (hashes of their signatures).
WANTED = "wanted.txt"


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


class Uncacheable(Exception):
    """A parameter whose value has no stable text (an object known only by its address): the fit is not cached."""


def signature(value) -> object:
    """A canonical, exact description of a parameter value: estimators by class and parameters (recursively, not
    scikit-learn's repr, which elides the middle of long ones), containers item by item, arrays and tables by hash."""
    if hasattr(value, "get_params") and not isinstance(value, type):
        params = value.get_params(deep=False)
        return (f"{type(value).__module__}.{type(value).__qualname__}",
                tuple((name, signature(params[name])) for name in sorted(params)))
    if isinstance(value, pd.DataFrame | pd.Series):
        return ("table", tuple(map(str, value.columns if isinstance(value, pd.DataFrame) else [value.name])),
                pd.util.hash_pandas_object(value, index=True).to_numpy().tobytes().hex())
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest())
    if isinstance(value, dict):
        return ("dict", tuple((repr(k), signature(value[k])) for k in sorted(value, key=repr)))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(signature(item) for item in value))
    if callable(value) and hasattr(value, "__qualname__") or isinstance(value, np.ufunc):
        return ("callable", getattr(value, "__module__", None), getattr(value, "__qualname__", value.__name__))
    text = repr(value)
    if " at 0x" in text:
        raise Uncacheable(text)
    return text


def _described(estimator) -> str | None:
    """The exact text of an estimator's class and parameters (signature); None when it has none."""
    try:
        return repr(signature(estimator))
    except Uncacheable:
        return None


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def key(estimator, features, target, described: str | None = None) -> str | None:
    """The hash of an estimator's class, parameters and training rows (index, columns, values); None outside a run or
    for an estimator with a parameter that has no stable description."""
    if not os.environ.get(ENV):
        return None
    described = described if described is not None else _described(estimator)
    if described is None:
        return None
    features = features if isinstance(features, pd.DataFrame) else pd.DataFrame(np.asarray(features))
    digest = hashlib.sha256(described.encode())
    digest.update(repr([(str(c), str(t)) for c, t in features.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(features, index=True).to_numpy().tobytes())
    digest.update(np.ascontiguousarray(np.asarray(target, dtype="float64")).tobytes())
    return digest.hexdigest()


def _estimators(value) -> list:
    """An estimator and every estimator among its parameters, recursively (an ensemble's members, a wrapper's inner)."""
    if hasattr(value, "get_params") and not isinstance(value, type):
        return [value, *(found for param in value.get_params(deep=False).values() for found in _estimators(param))]
    if isinstance(value, list | tuple):
        return [found for item in value for found in _estimators(item)]
    return []


def want(estimator) -> None:
    """Declare that the fits of `estimator` (and of the estimators inside it) will be asked for again in this run, by
    an ensemble whose member it is: only such fits are kept (a random forest's state is megabytes per fit)."""
    folder = os.environ.get(ENV)
    if not folder or not Path(folder).is_dir():
        return
    hashes = [_hash(text) for text in map(_described, _estimators(estimator)) if text is not None]
    with open(Path(folder) / WANTED, "a") as handle:
        handle.write("".join(f"{h}\n" for h in hashes))


def _wanted(described: str | None) -> bool:
    path = Path(os.environ.get(ENV, "")) / WANTED
    return described is not None and bool(os.environ.get(ENV)) and path.exists() and \
        _hash(described) in path.read_text().split()


def members(algorithm: str) -> list[str]:
    """The algorithms an ensemble refits (conf/algorithm/<algorithm>.yaml `members:`); none for a plain one."""
    from perfpred import config

    return list(config.group_option("algorithm", str(algorithm)).get("members") or [])


def is_member(algorithm: str, algorithms) -> bool:
    """Whether `algorithm` is a member of one of `algorithms`."""
    return any(algorithm in members(name) for name in algorithms if str(name) != algorithm)


def shared(fit):
    """Decorate an estimator's `fit(features, target)`: inside a run, a fit already kept for the same rows and
    parameters is read back instead of done again; a fit is kept when its estimator was declared wanted (`want`).
    A fit with other arguments (sample weights) is always done."""

    @functools.wraps(fit)
    def wrapper(self, features, target, *args, **kwargs):
        if args or kwargs or not os.environ.get(ENV):
            return fit(self, features, target, *args, **kwargs)
        described = _described(self)
        if not _wanted(described):  # only wanted estimators' fits are ever kept: nothing to look up, nothing to keep
            return fit(self, features, target)
        digest = key(self, features, target, described)
        if lookup(self, digest):
            return self
        fitted = fit(self, features, target)
        keep(self, digest)
        return fitted

    return wrapper


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
