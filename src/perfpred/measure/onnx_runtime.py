"""ONNX Runtime as a measured toolchain: a Keras descriptor exported to ONNX once (cached by its hash), or a user's
.onnx file as it is, timed on ONNX Runtime's CPU execution provider.

The agent (perfpred.measure.agent) calls `prepare` for jobs of toolchain `onnxruntime`; everything else about the
measurement (pinning, schedule, peak memory, journal) is the agent's and the stage's, as for the other toolchains.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import time
from pathlib import Path

#: Result fields this toolchain adds to a row (perfpred.measure.stage copies them).
ROW_FIELDS: tuple[str, ...] = ("onnx_bytes", "onnxruntime_version", "export_cached")
#: The relative output error above which an export does not compute the Keras model (float32 reassociation stays far below).
MAX_RELATIVE_ERROR = 1e-3


def cache_key(descriptor: dict, seed: int, layout: str | None = None) -> str:
    """A short hash of what an export depends on: the descriptor (at its input width), the weights' seed, the layout
    it is rewritten to (None: as exported)."""
    text = json.dumps(descriptor, sort_keys=True) + f"#seed={seed}" + (f"#layout={layout}" if layout else "")
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def randomize_weights(model, seed: int) -> None:
    """Give biases and batch-norm statistics random non-zero values, as a trained model has.

    A freshly built Keras model has zero biases and identity batch norms, which an exporter drops as
    no-ops: the ONNX graph would then be cheaper than any trained model's. Kernels keep their
    initialisers' random values.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    for variable in model.weights:
        path = getattr(variable, "path", variable.name)
        shape = tuple(variable.shape)
        if path.endswith(("gamma", "moving_variance", "variance")):
            variable.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        elif path.endswith(("bias", "beta", "moving_mean", "mean")):
            variable.assign(rng.normal(0.0, 0.1, shape).astype("float32"))


def export_keras(model, path: Path, seed: int = 0) -> dict:
    """Export a built keras.Model to ONNX at `path` (weights randomised as a trained model's); return its input and output."""
    import numpy as np

    rng = np.random.default_rng(seed)
    inputs = [rng.standard_normal([1 if d is None else int(d) for d in tensor.shape]).astype("float32")
              for tensor in model.inputs]
    randomize_weights(model, seed)  # builds the weights first: Keras exports only a model called once
    expected = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    started = time.perf_counter()
    _convert(model, path)
    _freeze_normalization_inputs(model, path)
    flat = expected[0] if isinstance(expected, list | tuple) else expected
    return {"export_s": time.perf_counter() - started, "inputs": inputs, "expected_output": np.asarray(flat)}


def _convert(model, path: Path) -> None:
    """tf2onnx on the model's inference function: the graph `model.export(format="onnx")` writes, in ~60 % of its time.

    Keras' exporter first wraps the model in a SavedModel export archive and walks every trackable object
    (~30 % of an export), which a frozen ONNX graph never uses. tf2onnx deep-copies the whole graph before
    each of its ~24 optimizer passes so that a failing pass can be undone (another ~25 %); the copies are
    skipped, and should a pass fail, the conversion is run again with them (tf2onnx's behaviour). After
    each pass it also writes every node back to its protobuf, weights included (`_one_proto_sync`: once, at
    the end, is enough; another ~13 %). Same operators and initialisers as Keras' export (tests/test_onnx.py
    checks it).
    """
    import tensorflow as tf
    import tf2onnx
    from keras.src.export.tf2onnx_lib import patch_tf2onnx

    specs = [tf.TensorSpec(tensor.shape, tensor.dtype, name=tensor.name) for tensor in model.inputs]
    function = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
    patch_tf2onnx()  # Keras' own shims of tf2onnx for NumPy 2
    with contextlib.redirect_stdout(io.StringIO()), _convertible_ops():  # tf2onnx traces the function in here
        try:
            with _undo_copies(False), _one_proto_sync():
                tf2onnx.convert.from_function(function, specs, output_path=str(path))
        except Exception:
            with _undo_copies(True):
                tf2onnx.convert.from_function(function, specs, output_path=str(path))


@contextlib.contextmanager
def _undo_copies(on: bool):
    """tf2onnx's optimizer copies the graph before each pass (on) or not (off), then the variable is as it was.

    tf2onnx reads the presence of CATCH_ERRORS, not its value: set, each pass runs on the graph itself.
    """
    previous = os.environ.pop(CATCH_ERRORS, None)
    if not on:
        os.environ[CATCH_ERRORS] = "FALSE"
    try:
        yield
    finally:
        os.environ.pop(CATCH_ERRORS, None)
        if previous is not None:
            os.environ[CATCH_ERRORS] = previous


@contextlib.contextmanager
def _one_proto_sync():
    """tf2onnx's optimizer passes leave the nodes' protobufs stale; the model is written from them once, at the end.

    After each pass tf2onnx writes every node's inputs, outputs and attributes back to its NodeProto: for a
    Const, the whole weight tensor (ResNet50: ~100 MB, 24 times). Nothing reads those protobufs before the
    final `make_graph`, which writes every node back itself (its own `update_proto`), so the written model
    is the same.
    """
    from tf2onnx.optimizer.optimizer_base import GraphOptimizerBase

    original = GraphOptimizerBase.optimize

    def optimize(self, graph, iteration):
        graph.update_proto = lambda *args, **kwargs: None  # the instance's, for this pass: the class's is kept
        try:
            return original(self, graph, iteration)
        finally:
            del graph.update_proto

    GraphOptimizerBase.optimize = optimize
    try:
        yield
    finally:
        GraphOptimizerBase.optimize = original


@contextlib.contextmanager
def _convertible_ops():
    """While the model is traced for export, two Keras ops take the form tf2onnx converts.

    - A grouped convolution (ConvNeXt's, ResNeXt's): Keras runs it in a nested XLA-compiled function because
      TensorFlow's CPU kernel lacks groups; tf2onnx cannot inline such a function and leaves a
      StatefulPartitionedCall no runtime runs. Traced plainly, it is one Conv2D op, which tf2onnx writes as an
      ONNX Conv with its `group`.
    - The exact GELU: TensorFlow writes it with Erfc, which tf2onnx lacks; 0.5 x (1 + erf(x / sqrt 2)) is the
      same function with Erf.
    The output check (check_output) compares the export with the Keras model as Keras runs it.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import nn

    original_conv, original_gelu = nn.conv, nn.gelu

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        channels_last = nn.backend.standardize_data_format(data_format) == "channels_last"
        channels = inputs.shape[-1] if channels_last else inputs.shape[1]
        if channels == kernel.shape[-2] or len(inputs.shape) == 5:
            return original_conv(inputs, kernel, strides, padding, data_format, dilation_rate)
        return tf.nn.convolution(inputs, kernel, strides, padding.upper(),
                                 data_format=nn._convert_data_format(data_format, len(inputs.shape)),
                                 dilations=dilation_rate)

    def gelu(x, approximate=True):
        if approximate:
            return original_gelu(x, approximate)
        x = tf.convert_to_tensor(x)
        return 0.5 * x * (1.0 + tf.math.erf(x / math.sqrt(2.0)))

    nn.conv, nn.gelu = conv, gelu
    try:
        yield
    finally:
        nn.conv, nn.gelu = original_conv, original_gelu


#: tf2onnx's switch of its optimizer's undo copies (tf2onnx.constants.ENV_TF2ONNX_CATCH_ERRORS).
CATCH_ERRORS = "TF2ONNX_CATCH_ERRORS"


def _freeze_normalization_inputs(model, path: Path) -> None:
    """Make the mean and variance of keras.layers.Normalization constants again.

    tf2onnx turns these captured tensors into graph inputs named `<layer>/Sub/y:0` (the mean) and
    `<layer>/Sqrt/x:0` (the variance), which a runtime would ask the caller for. The output check
    (`check_output`) proves the values are put back where they belong.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    exported = onnx.load(str(path))
    extra = list(exported.graph.input)[len(model.inputs):]
    if not extra:
        return
    layers = {layer.name: layer for layer in _all_layers(model) if type(layer).__name__ == "Normalization"}
    for value in extra:
        parts = value.name.split("/")  # TensorFlow scopes add a call suffix: normalization -> normalization_1
        owner = next((layer for name, layer in layers.items()
                      if any(re.fullmatch(rf"{re.escape(name)}(_\d+)?", part) for part in parts)), None)
        role = "mean" if "/Sub/" in value.name else "variance" if "/Sqrt/" in value.name else None
        if owner is None or role is None:
            continue  # left as an input: check_output refuses the export
        array = np.asarray(getattr(owner, role), dtype="float32")
        shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
        exported.graph.initializer.append(numpy_helper.from_array(array.reshape(shape), value.name))
        exported.graph.input.remove(value)
    onnx.save(exported, str(path))


def _all_layers(model) -> list:
    """The layers of a model and of the models nested in it."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found += _all_layers(layer)
    return found


def _export_descriptor(descriptor: dict, path: str, seed: int, layout: str | None = None) -> dict:
    """Build a descriptor with Keras, export it, check ONNX Runtime computes it; runs in a child process.

    `layout` "nchw": the export is then rewritten without the layout changes a one-kernel graph pays and a model
    does not (perfpred.measure.onnx_layout), and checked to compute the same."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.models.model_from_json(json.dumps(descriptor))  # random weights: never loaded
    partial = path + f".{os.getpid()}.partial"
    built = export_keras(model, Path(partial), seed)
    try:
        check_output(partial, built["inputs"], built["expected_output"])
        if layout == "nchw":
            _rewrite_nchw(partial, seed)
        elif layout is not None:
            raise ValueError(f"unknown ONNX layout {layout!r}: nchw or none")
        os.replace(partial, path)  # atomic: a concurrent worker sees the whole file or none
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
    return {"convert_s": built["export_s"]}


def _rewrite_nchw(path: str, seed: int) -> None:
    """The export at `path` rewritten in place to NCHW (onnx_layout.to_nchw), after checking it computes the same."""
    import onnx

    from perfpred.measure import onnx_layout

    model, changed = onnx_layout.to_nchw(onnx.load(path))
    if not changed:
        return
    rewritten = path + ".nchw"
    try:
        onnx.save(model, rewritten)
        onnx_layout.check(path, rewritten, changed, seed)
        os.replace(rewritten, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(rewritten)


def check_output(path: str, inputs: list, expected) -> None:
    """Refuse an export whose ONNX Runtime output differs from the Keras model's on the same input."""
    import numpy as np

    session = _session(path, 1)
    if len(session.get_inputs()) != len(inputs):  # tf2onnx does this to keras.layers.Normalization's mean and variance
        extra = ", ".join(value.name for value in session.get_inputs()[len(inputs):])
        raise RuntimeError(f"the ONNX export has inputs the Keras model has not ({extra}): the exporter turned weights "
                           "into inputs")
    feeds = {value.name: x for value, x in zip(session.get_inputs(), inputs, strict=True)}
    output = session.run(None, feeds)[0]
    scale = float(np.max(np.abs(expected))) or 1.0
    error = float(np.max(np.abs(output - expected))) / scale if output.shape == expected.shape else math.inf
    if not error <= MAX_RELATIVE_ERROR:  # NaN too
        raise RuntimeError(f"the ONNX export does not compute the Keras model: relative output error {error:.3g}")


def _session(path: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(threads, 1)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _feeds(session, input_width: int | None, seed: int) -> dict:
    """Random float32 inputs at the session's shapes: batch 1, other unknown dimensions the input width."""
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds = {}
    for value in session.get_inputs():
        shape = []
        for axis, dim in enumerate(value.shape):
            if isinstance(dim, int) and dim > 0:
                shape.append(dim)
            elif axis == 0:
                shape.append(1)
            elif input_width is None:
                raise ValueError(f"input {value.name!r} has an unknown dimension {dim!r} (axis {axis}): give --input-size")
            else:
                shape.append(int(input_width))
        if value.type != "tensor(float)":
            raise ValueError(f"input {value.name!r} is a {value.type}: perfpred feeds float32 image inputs only")
        feeds[value.name] = rng.standard_normal(shape).astype("float32")
    return feeds


def _input_width(feeds: dict) -> int | None:
    shape = next(iter(feeds.values())).shape
    if len(shape) != 4:
        return None
    return int(shape[2] if shape[3] < shape[1] else shape[3])  # NHWC when the last axis is the smallest


def prepare(descriptor: dict | None, job: dict, result: dict, in_child):
    """The call the schedule times: one session.run on fixed inputs; export the descriptor first unless cached.

    `descriptor` None: job["descriptor"] is an ONNX file, run as it is. `in_child(function, *args)` runs
    the export in a forked child (perfpred.measure.agent.in_child) so that Keras' memory never counts here.
    """
    import onnxruntime as ort

    threads = int(job.get("threads", {}).get("intra_op", 1))
    seed = int(job.get("seed", 0))
    started = time.perf_counter()
    if descriptor is None:
        path, cached = str(job["descriptor"]), True
    else:
        folder = Path(job.get("onnx_cache") or Path(job["descriptor"]).parent)
        folder.mkdir(parents=True, exist_ok=True)
        layout = job.get("layout")
        path = str(folder / f"{job.get('model') or 'model'}-{cache_key(descriptor, seed, layout)}.onnx")
        cached = os.path.exists(path)
        if not cached:
            result |= in_child(_export_descriptor, descriptor, path, seed, layout)
    session = _session(path, threads)
    feeds = _feeds(session, job.get("input_width"), seed)
    result |= {"build_s": time.perf_counter() - started, "input_width": _input_width(feeds),
               "onnx_bytes": os.path.getsize(path), "onnxruntime_version": ort.__version__, "export_cached": cached}

    def call() -> None:
        session.run(None, feeds)  # returns numpy arrays: the result exists on the host

    return call
