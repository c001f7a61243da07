"""`perfpred describe model.onnx`: the Keras features of an ONNX graph, from the graph and ONNX shape inference.

Pure Python on the `onnx` package: no runtime, nothing in the file is executed. The conventions
are those of the Keras rules (perfpred.features.weighted): 2 FLOPs per multiply-accumulate, 1 per
bias add and per element of an element-wise op with two tensors, 2 per kernel weight (the profiled
graphs' initialisers), nothing for ReLU, Clip, Sigmoid, Softmax, Concat, Transpose or Reshape.

What an exporter changed is counted as the exporter left it:
- a batch normalisation folded into a convolution is that convolution's bias (conv_params gain one
  weight per channel, bn_layers and bn_params lose it); a BatchNormalization node left in the graph
  is a bn layer (4 parameters per channel, 1 FLOP per element and 2 per channel, as in Keras);
- a Keras SeparableConv2D (a bias-free depthwise Conv feeding only a 1x1 Conv) counts as one conv
  layer, as Keras counts it; a depthwise Conv followed by anything else is a layer of its own;
- a batch normalisation it could not fold (after an activation) is written as a Mul and an Add of
  per-channel constants: that pair is a bn layer of 2 parameters per channel (the file holds no more),
  with the FLOPs of a Keras batch norm;
- a Dense layer is a Gemm, or a MatMul by a 2-D constant (with the Add of a 1-D constant that follows
  it as its bias); a LayerNormalization written out as ReduceMean/Sub/Pow/... costs what those ops cost.
A shape the exporter computes from the graph's own shapes (Keras 3's Dense on a feature map: Shape -> Gather ->
ReduceProd -> Concat -> Reshape to (H*W, C)) is folded where ONNX's data propagation stops (fold_shape_arithmetic:
integer arithmetic on constants and inferred shapes, nothing executed), and every axis of a MatMul operand but the
last counts as rows (inputs are fixed at batch 1).
`layers` counts the graph's nodes except constants and shape plumbing, and `neurons` uses the plain
input of each layer (the Jetson data's quirks after branches, see description._Walk.neurons, have no
ONNX counterpart).
"""

from __future__ import annotations

import math
from pathlib import Path

from perfpred.data.schema import FEATURE_COLUMNS
from perfpred.features import memory
from perfpred.features.descriptors import DescriptorError
from perfpred.features.onnx_loading import FLOAT_BYTES, detach_weights, fix_inputs, load
from perfpred.features.weighted import BN_FLOPS_PER_CHANNEL, BN_FLOPS_PER_ELEMENT, INIT_FLOPS_PER_WEIGHT

#: nodes that are neither layers nor computation: constants and shape arithmetic
PLUMBING = {"Constant", "Identity", "Shape", "Gather", "Unsqueeze", "Squeeze", "Cast", "ConstantOfShape", "Range",
            "Size", "Slice", "Concat_shape"}
#: element-wise ops with two or more tensor inputs: (inputs - 1) FLOPs per output element
ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Pow"}
MERGES = {"Add", "Sub", "Mul", "Max", "Min", "Sum", "Mean", "Concat"}
#: FLOPs per output element of activation ops (as weighted.ACTIVATION_FLOPS: the TF1 profiler's count)
ACTIVATION_FLOPS = {"HardSigmoid": 2, "HardSwish": 3, "Gelu": 4, "Mish": 1, "PRelu": 1}
POOLS = {"MaxPool", "AveragePool", "LpPool"}
GLOBAL_POOLS = {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "ReduceMean", "ReduceMax"}


def describe_onnx(source, input_size: int | None = None) -> dict:
    """Model-level features (schema.FEATURE_COLUMNS + description.EXTRA_COLUMNS) of an ONNX file or ModelProto."""
    return _Count(*inferred(source, input_size)).features()


def inferred(source, input_size: int | None = None) -> tuple:
    """(graph with inferred shapes, origin, input width, detached weights) of an ONNX file or ModelProto: what
    describe and kernel detection (perfpred.kernels.onnx_kernels) read; a DescriptorError if inference fails."""
    import onnx

    if isinstance(source, str | Path):
        model, origin = load(Path(source)), str(source)
    else:  # the caller's model is left as it was
        model, origin = onnx.ModelProto.FromString(source.SerializeToString()), "<onnx.ModelProto>"
    if model.functions:  # e.g. torch.export's modules: their nodes count as the graph's
        model = onnx.inliner.inline_local_functions(model)
    input_width = fix_inputs(model, input_size, origin)
    weights = detach_weights(model.graph)
    for _ in range(MAX_FOLDS):
        try:
            result = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except Exception as error:  # onnx raises InferenceError, ValidationError, RuntimeError
            raise DescriptorError(f"{origin}: ONNX shape inference failed: {str(error).splitlines()[0][:200]}") from None
        if not fold_shape_arithmetic(model, result.graph):
            break
    return result.graph, origin, input_width, weights


#: rounds of folding and inferring again (a fold can make the shape a later fold reads known)
MAX_FOLDS = 4
#: ops whose integer input is a shape (the index of that input): what fold_shape_arithmetic hands to them
SHAPE_INPUTS = {"Reshape": 1, "Expand": 1, "Tile": 1, "ConstantOfShape": 0}


def tensor_shapes(graph) -> dict[str, tuple]:
    """The shape of every graph input, output and inferred value (None for an unknown dimension)."""
    shapes = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        if value.type.tensor_type.HasField("shape"):
            shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                       for d in value.type.tensor_type.shape.dim)
    return shapes


def integer_constants(graph) -> dict:
    """The integer constants (axes, shapes) that stayed in a graph: initializers and Constant nodes, name -> array."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer if t.data_type not in FLOAT_BYTES}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            tensor = node.attribute[0].t
            if tensor.data_type not in FLOAT_BYTES:
                values[node.output[0]] = numpy_helper.to_array(tensor)
    return values


def _integer_values(graph, shapes: dict[str, tuple]) -> dict:
    """The value of every integer tensor computable from constants and known shapes (Shape, Gather, Cast,
    Unsqueeze, Squeeze, Concat, Slice, ReduceProd/ReduceSum and integer arithmetic), name -> numpy array."""
    import numpy as np

    values = integer_constants(graph)
    for node in graph.node:
        op, attributes = node.op_type, {a.name: a for a in node.attribute}
        if op == "Constant":
            continue
        if op == "Shape":
            shape = shapes.get(node.input[0])
            if shape is not None and all(d is not None for d in shape):
                start = attributes["start"].i if "start" in attributes else 0
                end = attributes["end"].i if "end" in attributes else len(shape)
                values[node.output[0]] = np.array(shape[start:end], dtype=np.int64)
            continue
        inputs = [values.get(name) if name else None for name in node.input]
        if not inputs or inputs[0] is None or not np.issubdtype(inputs[0].dtype, np.integer):
            continue
        axes = list(attributes["axes"].ints) if "axes" in attributes else (
            [int(a) for a in inputs[1].ravel()] if len(inputs) > 1 and inputs[1] is not None else None)
        try:
            if op == "Gather" and inputs[1] is not None:
                value = np.take(inputs[0], inputs[1], axis=attributes["axis"].i if "axis" in attributes else 0)
            elif op == "Cast":
                value = inputs[0].astype(np.int64)
            elif op == "Unsqueeze" and axes is not None:
                value = inputs[0]
                for axis in sorted(a % (value.ndim + len(axes)) for a in axes):
                    value = np.expand_dims(value, axis)
            elif op == "Squeeze":
                value = np.squeeze(inputs[0], axis=tuple(axes) if axes is not None else None)
            elif op == "Concat" and all(v is not None for v in inputs):
                value = np.concatenate([np.atleast_1d(v) for v in inputs], axis=attributes["axis"].i)
            elif op in ("ReduceProd", "ReduceSum"):
                keep = bool(attributes["keepdims"].i) if "keepdims" in attributes else True
                reduce = np.prod if op == "ReduceProd" else np.sum
                value = reduce(inputs[0], axis=tuple(axes) if axes else None, keepdims=keep)
            elif op == "Slice" and all(v is not None for v in inputs[1:3]):
                starts, ends = inputs[1].ravel(), inputs[2].ravel()
                slice_axes = inputs[3].ravel() if len(inputs) > 3 and inputs[3] is not None else range(len(starts))
                steps = inputs[4].ravel() if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
                index = [slice(None)] * inputs[0].ndim
                for axis, start, end, step in zip(slice_axes, starts, ends, steps, strict=True):
                    index[int(axis)] = slice(int(start), int(end), int(step))
                value = inputs[0][tuple(index)]
            elif op in ("Mul", "Add", "Sub", "Div") and len(inputs) == 2 and inputs[1] is not None:
                value = {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract, "Div": np.floor_divide}[op](*inputs)
            else:
                continue
        except (ValueError, IndexError, TypeError):  # a malformed graph: leave it to inference to say so
            continue
        values[node.output[0]] = np.asarray(value)
    return values


def fold_shape_arithmetic(model, inferred_graph) -> int:
    """Give each Reshape (Expand, Tile, ConstantOfShape) whose shape input is computed from known shapes that
    shape as a constant, so that inference knows its output: ONNX's data propagation stops at ops it does not
    cover (Keras 3's Dense on a feature map exports as Shape -> Gather -> ReduceProd -> Concat -> Reshape).
    Edits `model` in place; returns how many inputs it replaced. Nothing is executed: integer arithmetic on the
    graph's own constants and inferred shapes."""
    from onnx import numpy_helper

    constants = {t.name for t in model.graph.initializer}
    computed = [(node, index) for node in model.graph.node for index in [SHAPE_INPUTS.get(node.op_type)]
                if index is not None and len(node.input) > index and node.input[index] not in constants]
    if not computed:  # most graphs: every shape is a constant, nothing to evaluate
        return 0
    values = _integer_values(inferred_graph, tensor_shapes(inferred_graph))
    replaced = 0
    for node, index in computed:
        value = values.get(node.input[index])
        if value is None:
            continue
        name = f"{node.input[index]}__folded"
        if name not in constants:
            model.graph.initializer.append(numpy_helper.from_array(value.astype("int64").reshape(-1), name))
            constants.add(name)
        node.input[index] = name
        replaced += 1
    return replaced


class _Count:
    """One pass over the nodes of an inferred graph (written in topological order), accumulating features."""

    def __init__(self, graph, origin: str, input_width: int | None, weights: dict[str, tuple]):
        self.graph, self.origin, self.input_width = graph, origin, input_width
        self.constants: dict[str, tuple] = {t.name: tuple(t.dims) for t in graph.initializer}
        self.dtypes = {t.name: t.data_type for t in graph.initializer}
        self.constants |= {name: dims for name, (dims, _) in weights.items()}
        self.dtypes |= {name: dtype for name, (_, dtype) in weights.items()}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].t.dims is not None:
                value = node.attribute[0]
                if value.name == "value":
                    self.constants[node.output[0]] = tuple(value.t.dims)
                    self.dtypes[node.output[0]] = value.t.data_type
        self.shapes = tensor_shapes(graph)
        self.producers = {name: node for node in graph.node for name in node.output}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.totals = dict.fromkeys(FEATURE_COLUMNS, 0) | {key: 0 for key in (
            "conv_1x1_layers", "conv_3x3_layers", "conv_5x5_plus_layers", "depthwise_layers", "separable_layers",
            "pool_layers", "merge_layers", "lambda_layers", "max_activation", "param_bytes")}

    def shape(self, name: str, node) -> tuple:
        shape = self.constants.get(name) if name in self.constants else self.shapes.get(name)
        if shape is None or any(d is None for d in shape):
            import onnx

            if not onnx.defs.has(node.op_type, node.domain or ""):
                raise DescriptorError(
                    f"{self.origin}: node {node.name or '?'!r}: {node.op_type!r} (domain {node.domain or 'ai.onnx'!r}) is "
                    "not an ONNX operator, so nothing can be inferred past it; the exporter left it unconverted")
            raise DescriptorError(
                f"{self.origin}: node {node.name or '?'!r} ({node.op_type}): the shape of {name!r} cannot be inferred "
                f"({shape}); pass --input-size, or export the model with static shapes")
        return shape

    def weight(self, name: str) -> int:
        """Parameters held by a constant input (0 for a computed tensor or an integer constant)."""
        if name not in self.constants or self.dtypes.get(name) not in FLOAT_BYTES:
            return 0
        count = math.prod(self.constants[name])
        self.totals["param_bytes"] += count * FLOAT_BYTES[self.dtypes[name]]
        return count

    def features(self) -> dict:
        totals = self.totals
        for value in self.graph.input:
            if value.name not in self.constants and value.type.tensor_type.elem_type in FLOAT_BYTES:
                size = math.prod(self.shape(value.name, value)[1:])
                totals["input_size"] += size
                totals["activations"] += size
                totals["max_activation"] = max(totals["max_activation"], size)
        fused: set[str] = set()  # nodes counted as part of another layer (a separable's pointwise, a Dense's bias)
        for node in self.graph.node:
            if node.name in fused or node.op_type in PLUMBING or not node.output:
                continue
            self.node(node, fused)
        return {"input_width": self.input_width, **{c: totals[c] for c in FEATURE_COLUMNS},
                **{c: totals[c] for c in ("conv_1x1_layers", "conv_3x3_layers", "conv_5x5_plus_layers",
                                          "depthwise_layers", "separable_layers", "pool_layers", "merge_layers",
                                          "lambda_layers", "max_activation", "param_bytes")},
                **self.memory_features(), "approximate": False}

    def memory_features(self) -> dict:
        """memory.MEMORY_COLUMNS as for a Keras graph: weight bytes as held in the file, the liveness peak over the
        nodes in their (topological) file order, and the im2col buffer of the largest Conv."""
        schedule = memory.Schedule()
        for value in self.graph.input:
            if value.name not in self.constants:
                schedule.step(value.name, self.shapes.get(value.name, ())[1:], [])
        workspace = 0
        for node in self.graph.node:
            reads = [name for name in node.input if name and name not in self.constants]
            for name in node.output:
                dims = self.shapes.get(name) or ()
                schedule.step(name, tuple(d or 1 for d in dims[1:]), reads if name == node.output[0] else [])
            if node.op_type == "Conv":
                groups = next((a.i for a in node.attribute if a.name == "group"), 1) or 1
                source, out = self.shapes.get(node.input[0]), self.shapes.get(node.output[0])
                kernel = self.constants.get(node.input[1])
                if source and out and kernel and len(out) == 4:
                    workspace = max(workspace, out[2] * out[3] * math.prod(kernel[2:]) * (source[1] // groups))
        schedule.outputs = {value.name for value in self.graph.output}
        return {"weight_bytes": self.totals["param_bytes"], "peak_activation_bytes": memory.peak_live_bytes(schedule),
                "conv_workspace_bytes": workspace * memory.BYTES_PER_ELEMENT}

    def node(self, node, fused: set[str]) -> None:
        totals, op = self.totals, node.op_type
        out = self.shape(node.output[0], node)
        elements = math.prod(out[1:]) if out else 1
        tensors = [name for name in node.input if name and name not in self.constants]
        flops = params = 0
        if op in ("Conv", "ConvTranspose"):
            params, flops = self.conv(node, out, fused)
        elif op == "Gemm" or (op == "MatMul" and len(node.input) == 2 and node.input[1] in self.constants
                              and len(self.constants[node.input[1]]) == 2):
            params, flops = self.dense(node, out, fused)
        elif op == "BatchNormalization":
            channels = math.prod(self.shape(node.input[1], node))
            params = sum(self.weight(name) for name in node.input[1:5])
            flops = BN_FLOPS_PER_ELEMENT * elements + BN_FLOPS_PER_CHANNEL * channels
            totals["bn_layers"] += 1
            totals["bn_params"] += params
        elif op in POOLS:
            kernel = [a.ints for a in node.attribute if a.name == "kernel_shape"][0]
            flops = elements * math.prod(kernel)
            totals["pool_layers"] += 1
        elif op in GLOBAL_POOLS:
            flops = math.prod(self.shape(node.input[0], node)[1:])
            totals["pool_layers"] += 1
        elif op == "Mul" and (shift := self.scale_shift(node)) is not None:
            # a batch norm the exporter could not fold (it follows an activation): x * scale + shift per channel
            fused.add(shift.name)
            channels = max(math.prod(self.constants[name]) for name in node.input if name in self.constants)
            params = sum(self.weight(name) for name in (*node.input, *shift.input) if name in self.constants)
            flops = BN_FLOPS_PER_ELEMENT * elements + BN_FLOPS_PER_CHANNEL * channels
            totals["bn_layers"] += 1
            totals["bn_params"] += params
        elif op in ELEMENTWISE:
            # a constant operand is a weight (a scale, a shift, a PReLU slope): one FLOP per element all the same
            params = sum(self.weight(name) for name in node.input if name in self.constants and
                         math.prod(self.constants[name]) > 1)
            flops = max(len(node.input) - 1, 1) * elements
            totals["merge_layers"] += op in MERGES and len(tensors) > 1 and not self.gated(node)
        elif op == "Concat":
            totals["merge_layers"] += len(tensors) > 1
        elif op in ACTIVATION_FLOPS:
            flops = ACTIVATION_FLOPS[op] * elements
            params = sum(self.weight(name) for name in node.input[1:])
        elif op == "LayerNormalization":
            params = sum(self.weight(name) for name in node.input[1:])
            flops = 7 * elements
        totals["params"] += params
        totals["flops"] += flops
        totals["layers"] += 1
        totals["activations"] += elements
        totals["max_activation"] = max(totals["max_activation"], elements)

    def scale_shift(self, node):
        """The Add of a per-channel constant that alone follows a Mul by a per-channel constant, if so."""
        scale = [name for name in node.input if name in self.constants and math.prod(self.constants[name]) > 1]
        consumers = self.consumers.get(node.output[0], [])
        if len(scale) != 1 or len(node.input) != 2 or len(consumers) != 1 or consumers[0].op_type != "Add":
            return None
        shift = [name for name in consumers[0].input if name in self.constants]
        if len(shift) != 1 or math.prod(self.constants[shift[0]]) != math.prod(self.constants[scale[0]]):
            return None
        return consumers[0]

    def gated(self, node) -> bool:
        """Whether a Mul is x * sigmoid(x) (swish, hard swish): an activation in Keras, not a merge."""
        if node.op_type != "Mul" or len(node.input) != 2:
            return False
        for gate, other in (node.input, reversed(node.input)):
            producer = self.producers.get(gate)
            if producer is not None and producer.op_type in ("Sigmoid", "HardSigmoid") and producer.input[0] == other:
                return True
        return False

    def conv(self, node, out: tuple, fused: set[str]) -> tuple[int, int]:
        """A Conv (a depthwise one feeding only a 1x1 Conv: with it, a separable layer) or a ConvTranspose."""
        totals = self.totals
        attributes = {a.name: a for a in node.attribute}
        groups = attributes["group"].i if "group" in attributes else 1
        source = self.shape(node.input[0], node)
        kernel = tuple(self.shape(node.input[1], node)[2:])
        channels = source[1]
        depthwise = node.op_type == "Conv" and groups > 1 and groups == channels
        weights = self.weight(node.input[1])
        bias = self.weight(node.input[2]) if len(node.input) > 2 and node.input[2] else 0
        out_elements = math.prod(out[1:])
        if node.op_type == "ConvTranspose":
            macs = math.prod(source[1:]) * math.prod(kernel) * (weights // max(channels * math.prod(kernel), 1))
        else:
            macs = out_elements * math.prod(kernel) * (channels // groups)
        flops = 2 * macs + (out_elements if bias else 0) + INIT_FLOPS_PER_WEIGHT * weights
        neurons = out_elements * kernel[-1] ** 2 * (channels if depthwise else channels // groups)
        consumers = self.consumers.get(node.output[0], [])
        pointwise = consumers[0] if len(consumers) == 1 else None
        if (depthwise and not bias and pointwise is not None and pointwise.op_type == "Conv"
                and self.shape(pointwise.input[1], pointwise)[2:] == (1, 1)):
            fused.add(pointwise.name)  # Keras' SeparableConv2D: one layer, its two kernels
            final = self.shape(pointwise.output[0], pointwise)
            point_weights = self.weight(pointwise.input[1])
            point_bias = self.weight(pointwise.input[2]) if len(pointwise.input) > 2 and pointwise.input[2] else 0
            point_macs = math.prod(final[1:]) * out[1]
            flops += 2 * point_macs + (math.prod(final[1:]) if point_bias else 0) + INIT_FLOPS_PER_WEIGHT * point_weights
            weights, bias = weights + point_weights, bias + point_bias
            neurons = (source[-1] * out[-1] * kernel[-1] * channels + out[-1] ** 2 * kernel[-1] * channels) * final[1]
            totals["separable_layers"] += 1
            totals["activations"] += math.prod(final[1:])
            totals["max_activation"] = max(totals["max_activation"], math.prod(final[1:]))
        else:
            totals["depthwise_layers"] += depthwise
        size = max(kernel)
        key = {1: "conv_1x1_layers", 3: "conv_3x3_layers"}.get(size, "conv_5x5_plus_layers" if size >= 5 else None)
        if key:
            totals[key] += 1
        totals["conv_layers"] += 1
        totals["conv_params"] += weights + bias
        totals["neurons"] += neurons
        return weights + bias, flops

    def dense(self, node, out: tuple, fused: set[str]) -> tuple[int, int]:
        """A Gemm, or a MatMul by a constant with the constant Add after it as its bias."""
        source = self.shape(node.input[0], node)
        weights = self.weight(node.input[1])
        bias = self.weight(node.input[2]) if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2] else 0
        consumers = self.consumers.get(node.output[0], [])
        if node.op_type == "MatMul" and len(consumers) == 1 and consumers[0].op_type == "Add":
            add = consumers[0]
            other = [name for name in add.input if name != node.output[0]]
            if other and other[0] in self.constants and len(self.constants[other[0]]) == 1:
                fused.add(add.name)
                bias = self.weight(other[0])
                out = self.shape(add.output[0], add)
        # every axis but the last is rows (inputs are fixed at batch 1): a feature map reshaped to (H*W, C) before
        # its MatMul (Keras 3's Dense on a feature map) has H*W of them, not a batch of H*W
        out_elements = math.prod(out)
        macs = math.prod(source) * out[-1]
        flops = 2 * macs + (out_elements if bias else 0) + INIT_FLOPS_PER_WEIGHT * weights
        self.totals["fc_layers"] += 1
        self.totals["fc_params"] += weights + bias
        self.totals["neurons"] += math.prod(source) * out_elements
        return weights + bias, flops
