"""Reading an ONNX file for `describe`: recognise it, load it, fix its input sizes, detach its weights."""

from __future__ import annotations

from pathlib import Path

from perfpred.features.descriptors import DescriptorError

FLOAT_BYTES = {1: 4, 10: 2, 11: 8, 16: 2}  # onnx TensorProto: FLOAT, FLOAT16, DOUBLE, BFLOAT16


def is_onnx_file(source) -> bool:
    """Whether `source` is a path (str or os.PathLike) to an existing ONNX file (is_onnx: the suffix, or a protobuf)."""
    import os

    return isinstance(source, str | os.PathLike) and Path(source).is_file() and is_onnx(Path(source))


def is_onnx(path: Path) -> bool:
    """Whether a file is an ONNX model: by its .onnx suffix, or a protobuf whose graph has nodes."""
    if path.suffix.lower() == ".onnx":
        return True
    with path.open("rb") as handle:
        head = handle.read(1)
    if head in (b"{", b"[", b"P", b""):  # JSON or a zip (.keras)
        return False
    try:
        return len(load(path).graph.node) > 0
    except DescriptorError:
        return False


def load(path: Path):
    """The ONNX model in a file (weights included); an unreadable file is a DescriptorError naming it."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return onnx.load(str(path))
    except (DecodeError, ValueError, RuntimeError) as error:
        raise DescriptorError(f"{path}: not a readable ONNX model ({type(error).__name__}: {error})"[:300]) from None


def fix_inputs(model, input_size: int | None, origin: str):
    """Give image inputs batch 1 and fill every unknown (or, given input_size, spatial) dimension; return the width."""
    graph = model.graph
    constants = {tensor.name for tensor in graph.initializer}
    width = None
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name in constants or value.type.tensor_type.elem_type not in FLOAT_BYTES or len(dims) < 2:
            continue  # e.g. an integer shape argument: not a batch of data
        if len(dims) and dims[0].dim_value > 1:
            raise DescriptorError(f"{origin}: input {value.name!r} has batch {dims[0].dim_value}: export the model "
                                  "with batch 1 (or a dynamic batch)")
        if len(dims):
            dims[0].Clear()
            dims[0].dim_value = 1
        spatial = _spatial_axes([d.dim_value or None for d in dims])
        for axis, dim in enumerate(dims):
            if axis in spatial and input_size is not None:
                dim.Clear()
                dim.dim_value = input_size
            elif not dim.dim_value:
                if input_size is None:
                    raise DescriptorError(f"{origin}: input {value.name!r} has an unknown dimension "
                                          f"{dim.dim_param or '?'} (axis {axis}): pass --input-size")
                dim.Clear()
                dim.dim_value = input_size
        if len(dims) == 4 and width is None:
            width = dims[sorted(spatial)[-1]].dim_value
    if input_size is not None:  # shapes the exporter wrote for the old size would contradict the new ones
        del graph.value_info[:]
        for value in graph.output:
            value.type.tensor_type.ClearField("shape")
    return width


def detach_weights(graph) -> dict[str, tuple]:
    """Replace float initializers by typed graph inputs; return name -> (dims, data type).

    Shape inference needs their shapes only, and copying the weights into it (the whole file, once per
    call) is most of the time describe would take; integer constants (shapes, axes) stay for data_prop.
    """
    from onnx import helper

    weights = {t.name: (tuple(t.dims), t.data_type) for t in graph.initializer if t.data_type in FLOAT_BYTES}
    kept = [t for t in graph.initializer if t.name not in weights]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    declared = {value.name for value in graph.input}
    graph.input.extend(helper.make_tensor_value_info(name, dtype, dims) for name, (dims, dtype) in weights.items()
                       if name not in declared)
    return weights


def _spatial_axes(dims: list) -> set[int]:
    """The height and width axes of a 4-D image input: NCHW unless the last axis is the smallest (NHWC)."""
    if len(dims) != 4:
        return set()
    channels_last = dims[3] is not None and (dims[1] is None or dims[3] < dims[1])
    return {1, 2} if channels_last else {2, 3}
