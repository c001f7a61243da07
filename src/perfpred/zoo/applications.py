"""Networks of keras.applications named on the command line as `app:NAME` (the one path that imports TensorFlow)."""

from __future__ import annotations

import os
import re

PREFIX = "app:"
#: Input width of an application when none is given (what keras.applications documents for most).
DEFAULT_INPUT_WIDTH = 224
_MINIMUM_WIDTH = re.compile(r"at least (\d+)x\d+")


def is_application(model: str) -> bool:
    """Whether a MODEL argument names a keras.applications network (`app:MobileNetV2`)."""
    return isinstance(model, str) and model.startswith(PREFIX)


def application_names() -> list[str]:
    """The network constructors of keras.applications, e.g. ['ConvNeXtBase', ..., 'Xception']."""
    keras = _import_keras()
    return sorted(name for name in dir(keras.applications) if name[:1].isupper())


def build_application(model: str, input_width: int | None = None):
    """Build `app:NAME` from keras.applications without weights at a square RGB input of `input_width`."""
    name = model[len(PREFIX) :] if is_application(model) else model
    input_width = int(input_width or DEFAULT_INPUT_WIDTH)
    keras = _import_keras()
    constructor = getattr(keras.applications, name, None)
    if constructor is None or not name[:1].isupper():
        raise ValueError(f"unknown keras application {name!r}: known are {', '.join(application_names())}")
    try:
        return constructor(weights=None, input_shape=(input_width, input_width, 3))
    except ValueError as error:
        minimum = _MINIMUM_WIDTH.search(str(error))
        if minimum:
            raise ValueError(
                f"input size {input_width} is too small for {name}: it needs at least "
                f"{minimum.group(1)}x{minimum.group(1)}; pass --input-size {minimum.group(1)} or more"
            ) from None
        raise ValueError(f"{name} cannot be built at input size {input_width}: {error}") from None


def _import_keras():
    """Import Keras quietly: TensorFlow's start-up log lines are noise for a user of `perfpred predict`."""
    import sys

    if "keras" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TF_CPP_MIN_LOG_LEVEL does not reach the lines TensorFlow's C++ libraries log while they load, before
    # absl's logging starts (the oneDNN notice, once per library: twice). Only building a model happens
    # here, no inference, so they are dropped: file descriptor 2 points at /dev/null during the import.
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return keras
