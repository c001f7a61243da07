"""Kernel detection from an ONNX file: the kernels a runtime executes, pure Python on the `onnx` package.

The graph is read as `perfpred describe model.onnx` reads it (perfpred.features.onnx_graph.inferred: inputs
fixed to batch 1, ONNX shape inference, nothing executed), and its nodes are grouped into the kernels of
perfpred.kernels.detector with the same kinds, configurations and cost conventions as a Keras descriptor:

- Conv: `conv` (group 1), `depthwise` (group == input channels), else `grouped`; ConvTranspose: `transposed`;
  Gemm, or MatMul (with the Add of a 1-D constant after it as its bias): `dense`; MaxPool, AveragePool:
  `maxpool`, `avgpool`; GlobalAveragePool/GlobalMaxPool and ReduceMean/ReduceMax over height and width:
  `globalpool`; Add/Sub/Mul/Div/Max/Min/Sum/Mean of two or more tensors: `add`; Concat: `concat`;
  Resize/Upsample: `resize`; activations, BatchNormalization and element-wise ops of one tensor (and
  constants): `unary`; Reshape, Flatten, Transpose, Squeeze, Identity, Dropout...: views, no kernel; shape
  arithmetic (integer tensors, constants): nothing; anything else (Pad, Slice, Softmax over a non-image...):
  `other`.
- Fusion applies the target's rules (conf/kernels/<target>.yaml, keyed by Keras class names) through the Keras
  class each ONNX op stands for (perfpred.kernels.detector.rule_key): Relu and Clip are `ReLU`; Sigmoid,
  HardSigmoid, HardSwish, Tanh, LeakyRelu, Elu, Softmax, Gelu... are `Activation:<function>` (`Activation:sigmoid`,
  `Activation:gelu`), which fuse only where a rule names them; BatchNormalization is `BatchNormalization`, and so
  is a Mul by a per-channel constant followed (as its only reader) by the Add of one (a batch norm the exporter
  wrote out, e.g. tf2onnx after a depthwise convolution or in ResNet50). A gate `Mul(x, f(x))`, f a chain of
  Sigmoid/HardSigmoid/Relu/Clip and scalar-constant arithmetic read by nothing else, is one `Activation:swish`
  (with a Sigmoid) or `Activation:hard_swish`. As in detect_graph, a node fuses into the kernel producing its input
  only if it is that tensor's only reader (a view passes its producer on).
- A Gemm or MatMul on a 4-D tensor (a Dense on a feature map) is a 1x1 `conv`, as in detect_graph.
- A batch normalisation that the exporter folded into a convolution is simply absent: the convolution has a
  bias instead (its FLOPs gain one per output element, its bytes one weight per channel, where the Keras kernel
  counts the fused batch norm's 1 per element and 2 per channel and reads its 4 vectors).
- Shapes are Keras-like: without the batch axis, channels last ((H, W, C) whatever the ONNX layout; the layout of
  each 4-D tensor is followed through Transposes from the input's); a global pooling's output is (C,) when it
  is flattened next (Keras' default), (1, 1, C) when kept (keepdims).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from perfpred.features import shapes
from perfpred.features.descriptors import DescriptorError
from perfpred.features.onnx_graph import ACTIVATION_FLOPS, _Count, inferred, integer_constants
from perfpred.features.onnx_loading import FLOAT_BYTES, _spatial_axes
from perfpred.features.weighted import BN_FLOPS_PER_CHANNEL, BN_FLOPS_PER_ELEMENT
from perfpred.kernels.detector import (
    ACTIVATION_LAYERS,
    BYTES_PER_ELEMENT,
    SKIP_KEY,
    WINDOWED_KINDS,
    Kernel,
    fusion_key,
    window_share,
)

#: nodes that move no data (or only metadata): the tensor they output is their input's
VIEWS = {"Reshape", "Flatten", "Transpose", "Identity", "Dropout", "Squeeze", "Unsqueeze", "Cast", "CastLike"}
#: element-wise ops: with two or more tensor inputs a merge (`add`), with one (and constants) a `unary` kernel
ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Pow"}
#: the Keras class (the fusion rules' key) each ONNX activation op stands for
RULE_CLASS = {"Relu": "ReLU", "Clip": "ReLU", "Sigmoid": "Activation:sigmoid", "HardSigmoid": "Activation:hard_sigmoid",
              "HardSwish": "Activation:hard_swish", "Tanh": "Activation:tanh", "LeakyRelu": "Activation:leaky_relu",
              "Elu": "Activation:elu", "Selu": "Activation:selu", "Softmax": "Activation:softmax",
              "LogSoftmax": "Activation:log_softmax", "Softplus": "Activation:softplus", "Softsign": "Activation:softsign",
              "Gelu": "Activation:gelu", "Mish": "Activation:mish", "Celu": "Activation:celu",
              "ThresholdedRelu": "Activation:thresholded_relu", "PRelu": "PReLU",
              "BatchNormalization": "BatchNormalization"}
#: other element-wise ops of one tensor: a `unary` kernel of their own
UNARY_OPS = {"Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs", "Erf", "Floor", "Ceil", "Round", "Sign", "Sin",
             "Cos", "Not", "IsNaN", "IsInf"}
#: ops of a gate f(x) in Mul(x, f(x)): swish is Sigmoid, hard swish Add 3 -> Clip 0..6 -> Mul 1/6 (or HardSigmoid)
GATE_OPS = {"Sigmoid", "HardSigmoid", "Relu", "Clip", "Add", "Sub", "Mul", "Div"}
POOLS = {"MaxPool": "maxpool", "AveragePool": "avgpool", "LpPool": "avgpool"}
GLOBAL_POOLS = {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"}
#: ops whose 4-D output is NCHW by definition
CHANNELS_FIRST = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool",
                  "GlobalMaxPool", "GlobalLpPool", "BatchNormalization", "InstanceNormalization", "LRN"}


def _rows_as_map(shape: tuple) -> tuple:
    """A MatMul operand as Keras has it: (C,) for one row; (H, W, C) for a 4-D one; the rows of a feature map
    reshaped to (H*W, C) as a square map when they make one (else (rows, 1, C)): what its GEMM's cost depends on."""
    rows = math.prod(shape[:-1])
    if rows == 1:
        return (shape[-1],)
    if len(shape) == 4:
        return tuple(shape[1:])
    side = math.isqrt(rows)
    return (side, side, shape[-1]) if side * side == rows else (rows, 1, shape[-1])


@dataclass
class _Unit:
    """The nodes of one operator as the fusion rules see it (one node, or a pattern such as a written-out BN)."""

    kind: str | None  # None: a view
    cls: str  # the Keras class name the fusion rules know it by
    names: list[str]
    sources: list[str]  # the tensors it reads (not constants)
    output: str
    flops: int = 0
    params: int = 0
    config: dict = field(default_factory=dict)  # kernel_size, strides, groups; share: of the input its windows read


def detect_onnx(source, rules: dict[str, list[str]], input_size: int | None = None) -> list[Kernel]:
    """The kernels of an ONNX file (path) or onnx.ModelProto under fusion rules (Keras class -> kinds it fuses into).

    `input_size` fills the spatial size of the image input (required when it is dynamic); a tensor whose shape
    inference cannot give is a DescriptorError naming its node."""
    return _Detector(*inferred(source, input_size)).kernels(rules)



class _Detector(_Count):
    """The inferred graph's nodes grouped into units, then into kernels (describe's maps and shape errors reused)."""

    def __init__(self, graph, origin, input_width, weights):
        super().__init__(graph, origin, input_width, weights)
        self.dtypes_of = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.value_info, *graph.output)}
        self.values = self._integer_constants()
        self.layout = self._layouts()
        self.names = [node.name or f"{node.op_type}_{index}" for index, node in enumerate(graph.node)]
        self.index_of = {name: index for index, node in enumerate(graph.node) for name in node.output}

    # --- graph facts ---------------------------------------------------------------------------------------------
    def _integer_constants(self) -> dict[str, list[int]]:
        """Values of the integer constants (axes, shapes) that stayed in the graph."""
        return {name: value.ravel().tolist() for name, value in integer_constants(self.graph).items()}

    def _layouts(self) -> dict[str, str]:
        """Axis letters of each 4-D tensor ('NCHW', 'NHWC', ...): the input's guessed, followed through the graph."""
        layout: dict[str, str] = {}
        for value in self.graph.input:
            dims = self.shapes.get(value.name)
            if value.name not in self.constants and dims and len(dims) == 4:
                layout[value.name] = "NHWC" if _spatial_axes(list(dims)) == {1, 2} else "NCHW"
        for node in self.graph.node:
            found = None  # unknown: a reshaped tensor, or one whose rank changed
            if node.op_type in CHANNELS_FIRST:
                found = "NCHW"
            elif node.op_type == "Transpose":
                perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), [3, 2, 1, 0])
                # of a tensor of unknown layout, the two transposes exporters write between NHWC and NCHW
                before = layout.get(node.input[0], {(0, 3, 1, 2): "NHWC", (0, 2, 3, 1): "NCHW"}.get(tuple(perm)))
                found = "".join(before[axis] for axis in perm) if before and len(perm) == 4 else None
            elif node.op_type not in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Tile", "Expand"):
                found = next((layout[name] for name in node.input if name in layout), None)
            for name in node.output:
                if found is not None and len(self.shapes.get(name) or ()) == 4:
                    layout[name] = found
        return layout

    def is_float(self, name: str) -> bool:
        return self.dtypes_of.get(name, 1) in FLOAT_BYTES

    def hwc(self, name: str, node) -> tuple:
        """A tensor's shape as Keras has it: no batch axis, channels last."""
        shape = self.shape(name, node)
        if len(shape) == 4:
            axes = self.layout.get(name, "NCHW")
            return tuple(shape[axes.index(letter)] for letter in "HWC")
        return tuple(shape[1:]) or (1,)

    def readers(self, name: str) -> list:
        return self.consumers.get(name, [])

    def scalar(self, name: str) -> bool:
        return name in self.constants and math.prod(self.constants[name]) <= 1

    # --- units ---------------------------------------------------------------------------------------------------
    def units(self) -> list[_Unit]:
        nodes = list(self.graph.node)
        constant = set(self.constants)
        absorbed: set[int] = set()  # nodes that are part of a later node's unit
        gates: dict[int, tuple[str, list[int]]] = {}  # gate Mul -> (x, the gate's nodes)
        for index, node in enumerate(nodes):
            if node.op_type == "Mul" and len(node.input) == 2 and not set(node.input) & constant:
                found = self._gate(node, nodes)
                if found is not None:
                    gates[index] = found
                    absorbed.update(found[1])
        units: list[_Unit] = []
        for index, node in enumerate(nodes):
            if index in absorbed or not node.output:
                continue
            inputs = [name for name in node.input if name]
            if node.op_type in ("Constant", "ConstantOfShape") or all(name in constant for name in inputs):
                constant.update(node.output)  # computed from constants only: folded by any runtime
                continue
            if not self.is_float(node.output[0]):
                continue  # shape arithmetic
            tensors = [name for name in inputs if name not in constant]
            unit = self._unit(index, node, nodes, tensors, gates, absorbed)
            if unit is not None:
                units.append(unit)
        return units

    def _gate(self, node, nodes) -> tuple[str, list[int]] | None:
        """(x, the gate's node indices) when `node` is Mul(x, f(x)) and f's nodes are read by nothing else."""
        for gate, other in (tuple(node.input), tuple(reversed(node.input))):
            chain, tensor = [], gate
            while tensor in self.index_of and len(self.readers(tensor)) == 1:
                index = self.index_of[tensor]
                producer = nodes[index]
                if producer.op_type not in GATE_OPS:
                    break
                tensors = [name for name in producer.input if name and name not in self.constants]
                constants = [name for name in producer.input if name and name in self.constants]
                if len(tensors) != 1 or not all(self.scalar(name) for name in constants):
                    break
                chain.append(index)
                tensor = tensors[0]
                if tensor == other:
                    if any(nodes[i].op_type in ("Sigmoid", "HardSigmoid", "Clip", "Relu") for i in chain):
                        return other, chain
                    break
        return None

    def _unit(self, index, node, nodes, tensors, gates, absorbed) -> _Unit | None:
        op, name, output = node.op_type, self.names[index], node.output[0]
        if op in VIEWS:
            return _Unit(None, op, [name], tensors[:1], output)
        if not tensors:
            return None
        elements = math.prod(self.shape(output, node)[1:])
        if index in gates:
            x, chain = gates[index]
            names = [self.names[i] for i in sorted(chain)] + [name]
            # as the Keras rules count swish (1 per element) and hard swish (3): the arithmetic ops of f and the gate
            flops = sum(ACTIVATION_FLOPS.get(nodes[i].op_type, nodes[i].op_type in ELEMENTWISE) for i in chain)
            flops = (flops + 1) * elements
            swish = any(nodes[i].op_type == "Sigmoid" for i in chain)  # else a hard swish (HardSigmoid, or Clip/Relu)
            return _Unit("unary", "Activation:swish" if swish else "Activation:hard_swish", names, [x], output, flops)
        if op in ("Conv", "ConvTranspose"):
            return self._conv(node, name, tensors)
        if op == "Gemm" or op == "MatMul":
            return self._dense(index, node, name, tensors, absorbed)
        if op in POOLS:
            attributes = {a.name: list(a.ints) for a in node.attribute}
            kernel = attributes.get("kernel_shape", [1])
            strides = attributes.get("strides") or [1] * len(kernel)
            return _Unit(POOLS[op], op, [name], tensors, output, elements * math.prod(kernel),
                         config={"kernel_size": max(kernel), "strides": max(strides), "share": window_share(kernel, strides)})
        if op in GLOBAL_POOLS or (op in ("ReduceMean", "ReduceMax") and self._spatial_reduction(node)):
            # as Keras' keepdims: a ReduceMean's as it says, a GlobalAveragePool's (1, C, 1, 1) kept unless flattened
            keep = next((a.i for a in node.attribute if a.name == "keepdims"), 1) if op not in GLOBAL_POOLS else not all(
                r.op_type in ("Squeeze", "Flatten") or (r.op_type == "Reshape" and len(self.shapes.get(r.output[0]) or ()) == 2)
                for r in self.readers(output))
            return _Unit("globalpool", op, [name], tensors[:1], output, math.prod(self.shape(tensors[0], node)[1:]),
                         config={"pooled": not keep})
        if op in ELEMENTWISE and len(tensors) >= 2:
            return _Unit("add", {"Mul": "Multiply", "Sub": "Subtract"}.get(op, "Add"), [name], tensors, output,
                         (len(tensors) - 1) * elements)
        if op in ELEMENTWISE:
            params = sum(self.weight(n) for n in node.input if n in self.constants and not self.scalar(n))
            shift = self.scale_shift(node) if op == "Mul" else None
            if shift is not None:  # a batch norm written out: x * scale + shift per channel
                absorbed.add(self.index_of[shift.output[0]])
                channels = max(math.prod(self.constants[n]) for n in node.input if n in self.constants)
                params += sum(self.weight(n) for n in shift.input if n in self.constants)
                return _Unit("unary", "BatchNormalization", [name, shift.name or shift.output[0]], tensors,
                             shift.output[0], BN_FLOPS_PER_ELEMENT * elements + BN_FLOPS_PER_CHANNEL * channels, params)
            scale = self._normalization_scale(node) if op in ("Sub", "Add") else None
            if scale is not None:  # Keras' Normalization layer: (x - mean) / sqrt(variance), one unary kernel
                absorbed.add(self.index_of[scale.output[0]])
                params += sum(self.weight(n) for n in scale.input if n in self.constants)
                return _Unit("unary", "Normalization", [name, scale.name or scale.output[0]], tensors,
                             scale.output[0], 2 * elements, params)
            return _Unit("unary", "Rescaling", [name], tensors, output, elements, params)
        if op == "BatchNormalization":
            channels = math.prod(self.shape(node.input[1], node))
            params = sum(self.weight(n) for n in node.input[1:5])
            return _Unit("unary", "BatchNormalization", [name], tensors[:1], output,
                         BN_FLOPS_PER_ELEMENT * elements + BN_FLOPS_PER_CHANNEL * channels, params)
        if op == "LayerNormalization":  # opset 17's op, as Keras' LayerNormalization: a unary kernel at its own rate
            params = sum(self.weight(n) for n in node.input[1:] if n in self.constants)
            return _Unit("unary", "LayerNormalization", [name], tensors[:1], output, 7 * elements, params)
        if op in RULE_CLASS or op in UNARY_OPS:
            params = sum(self.weight(n) for n in node.input[1:] if n in self.constants and not self.scalar(n))
            flops = ACTIVATION_FLOPS.get(op, 0 if op in RULE_CLASS else 1) * elements
            return _Unit("unary", RULE_CLASS.get(op, op), [name], tensors[:1], output, flops, params)
        if op == "Concat":
            return _Unit("concat", "Concatenate", [name], tensors, output)
        if op == "Tile" and node.input[0] in self.index_of and nodes[self.index_of[node.input[0]]].op_type == "Unsqueeze":
            # tf2onnx's UpSampling2D (nearest): a repeat per axis, Unsqueeze -> Tile -> Reshape, twice
            repeats = self.values.get(node.input[1]) or [1]
            return _Unit("resize", "Repeat", [name], tensors[:1], output, config={"kernel_size": max(repeats)})
        if op in ("Resize", "Upsample"):
            before, after = self.hwc(tensors[0], node), self.hwc(output, node)
            return _Unit("resize", "UpSampling2D", [name], tensors[:1], output,
                         config={"kernel_size": max(after[0] // max(before[0], 1), 1) if len(before) == 3 else 1})
        return _Unit("other", op, [name], tensors, output)

    def _normalization_scale(self, node):
        """The Div or Mul by a per-channel constant that alone follows a Sub or Add of one, if so."""
        shift = [n for n in node.input if n in self.constants]
        readers = self.readers(node.output[0])
        if len(shift) != 1 or self.scalar(shift[0]) or len(readers) != 1 or readers[0].op_type not in ("Div", "Mul"):
            return None
        scale = [n for n in readers[0].input if n in self.constants]
        if len(scale) != 1 or self.scalar(scale[0]) or len(readers[0].input) != 2:
            return None
        return readers[0]

    def _spatial_reduction(self, node) -> bool:
        axes = next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
        if axes is None and len(node.input) > 1:
            axes = self.values.get(node.input[1])
        rank = len(self.shape(node.input[0], node))
        if axes is None or rank != 4:
            return False
        letters = self.layout.get(node.input[0], "NCHW")
        return {letters[axis % rank] for axis in axes} == {"H", "W"}

    def _conv(self, node, name, tensors) -> _Unit:
        attributes = {a.name: a for a in node.attribute}
        groups = attributes["group"].i if "group" in attributes else 1
        source = self.shape(node.input[0], node)
        out = self.shape(node.output[0], node)
        kernel = tuple(self.shape(node.input[1], node)[2:])
        channels = source[1]
        weights = self.weight(node.input[1])
        bias = self.weight(node.input[2]) if len(node.input) > 2 and node.input[2] else 0
        out_elements = math.prod(out[1:])
        if node.op_type == "ConvTranspose":
            macs = math.prod(source[1:]) * math.prod(kernel) * (weights // max(channels * math.prod(kernel), 1))
            kind = "transposed"
        else:
            macs = out_elements * math.prod(kernel) * (channels // groups)
            kind = "conv" if groups == 1 else "depthwise" if groups == channels else "grouped"
        strides = list(attributes["strides"].ints) if "strides" in attributes else [1] * len(kernel)
        share = 1.0 if kind == "transposed" else window_share(kernel, strides)
        return _Unit(kind, node.op_type, [name], tensors[:1], node.output[0], 2 * macs + (out_elements if bias else 0),
                     weights + bias, {"kernel_size": max(kernel), "strides": max(strides), "groups": groups,
                                      "share": share})

    def _dense(self, index, node, name, tensors, absorbed) -> _Unit:
        source = self.shape(node.input[0], node)
        output, names = node.output[0], [name]
        weights = self.weight(node.input[1]) if node.input[1] in self.constants else 0
        bias = self.weight(node.input[2]) if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2] else 0
        readers = self.readers(output)
        if node.op_type == "MatMul" and len(readers) == 1 and readers[0].op_type == "Add":
            add = readers[0]
            other = [n for n in add.input if n != output]
            if other and other[0] in self.constants and len(self.constants[other[0]]) == 1:
                absorbed.add(self.index_of[add.output[0]])
                bias, output = self.weight(other[0]), add.output[0]
                names.append(add.name or output)
        out = self.shape(output, node)
        if node.op_type == "Gemm" and any(a.name == "transA" and a.i for a in node.attribute):
            source = (*source[:-2], source[-1], source[-2])
        macs = math.prod(out) * source[-1]  # every axis but the last is rows (batch 1): (H*W, C) has H*W
        flops = 2 * macs + (math.prod(out) if bias else 0)
        if math.prod(source[:-1]) > 1:  # on a feature map: a 1x1 convolution, as detector._base_kernel says
            return _Unit("conv", "Dense", names, tensors, output, flops, weights + bias,
                         {"kernel_size": 1, "strides": 1, "groups": 1})
        return _Unit("dense", "Dense", names, tensors, output, flops, weights + bias)

    # --- kernels -------------------------------------------------------------------------------------------------
    def kernel(self, unit: _Unit, skipping: tuple | list = WINDOWED_KINDS) -> Kernel:
        """A unit's kernel; `skipping`: the kinds whose strided windows read only their share of the input."""
        node = self.graph.node[self.index_of[unit.output]]
        first = self.hwc(unit.sources[0], node) if unit.sources else self.hwc(unit.output, node)
        out = self.hwc(unit.output, node)
        if unit.cls == "Repeat":  # the first axis' repeat of an upsampling: its 4-D input, height repeated
            source = self.graph.node[self.index_of[unit.sources[0]]].input[0]
            first = self.hwc(source, node)
            out = (first[0] * unit.config["kernel_size"], *first[1:]) if len(first) == 3 else first
            unit = _Unit(unit.kind, unit.cls, unit.names, [source], unit.output, unit.flops, unit.params, unit.config)
        if unit.cls == "Dense" and unit.sources:  # a MatMul contracts the last axis, whatever the 4-D layout guessed
            first, out = (_rows_as_map(self.shape(name, node)) for name in (unit.sources[0], unit.output))
        if unit.config.get("pooled"):
            out = out[-1:]
        sizes = [shapes.elements(self.hwc(name, node)) for name in unit.sources]
        share = unit.config.get("share", 1.0) if unit.kind in skipping else 1.0
        read = round(sum(sizes[:1]) * share + sum(sizes[1:])) + unit.params
        flops = max(unit.flops, shapes.elements(out)) if unit.kind in ("add", "unary", "concat", "resize") else unit.flops
        config = {key: value for key, value in unit.config.items() if key in ("kernel_size", "strides", "groups")}
        return Kernel(unit.kind, list(unit.names), first, out, first[-1], out[-1], inputs=len(unit.sources),
                      flops=flops, bytes_read=read * BYTES_PER_ELEMENT,
                      bytes_written=shapes.elements(out) * BYTES_PER_ELEMENT, classes=[unit.cls],
                      weight_bytes=unit.params * BYTES_PER_ELEMENT, **config)

    def kernels(self, rules: dict[str, list[str]]) -> list[Kernel]:
        """detect_graph's fusion over the units: a unit joins the kernel producing its one input when the rules
        let its class follow that kernel's kind and it is that tensor's only reader."""
        units = self.units()
        skipping = rules.get(SKIP_KEY, WINDOWED_KINDS)  # the kinds whose strided windows skip the input between them
        readers: dict[str, int] = {}
        for unit in units:
            for name in unit.sources:
                readers[name] = readers.get(name, 0) + 1
        kernels: list[Kernel] = []
        last_of: dict[str, Kernel] = {}
        activated: set[int] = set()  # ids of the kernels whose output has been through a non-linear activation
        for unit in units:
            if unit.kind is None:
                if unit.sources and unit.sources[0] in last_of:
                    last_of[unit.output] = last_of[unit.sources[0]]
                continue
            producer = last_of.get(unit.sources[0]) if len(unit.sources) == 1 else None
            if (unit.cls == "Repeat" and producer is not None and producer.classes == ["Repeat"]
                    and readers.get(unit.sources[0]) == 1 and len(producer.output_shape) == 3):
                # the width's repeat after the height's: one upsampling kernel (not a fusion rule: one Keras layer)
                height, width, channels = producer.output_shape
                producer.output_shape = (height, width * unit.config["kernel_size"], channels)
                producer.kernel_size = max(producer.kernel_size, unit.config["kernel_size"])
                producer.layers.extend(unit.names)
                producer.classes = ["UpSampling2D"]
                producer.flops = shapes.elements(producer.output_shape)
                producer.bytes_written = producer.flops * BYTES_PER_ELEMENT
                last_of[unit.output] = producer
                continue
            key = fusion_key(unit.cls, producer, activated)
            nonlinear = unit.cls.split(":")[0] in ACTIVATION_LAYERS
            if producer is not None and producer.kind in rules.get(key, ()) and readers.get(unit.sources[0]) == 1:
                if nonlinear:
                    activated.add(id(producer))
                producer.layers.extend(unit.names)
                producer.classes.append(unit.cls)
                producer.flops += unit.flops
                producer.bytes_read += unit.params * BYTES_PER_ELEMENT
                producer.weight_bytes += unit.params * BYTES_PER_ELEMENT
                last_of[unit.output] = producer
                continue
            made = self.kernel(unit, skipping)
            if nonlinear:
                activated.add(id(made))
            kernels.append(made)
            last_of[unit.output] = made
        if not kernels:
            raise DescriptorError(f"{self.origin}: no kernels found in the graph")
        return kernels
