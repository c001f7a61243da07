"""Kernel detection: a Keras descriptor as the list of kernels a runtime executes (pure Python, no TensorFlow).

A kernel is one fused operator group: a convolution with the batch normalisation and activation that
follow it, a pooling, an element-wise merge... Which layers fuse into the one before them is a per-target
rule set (conf/kernels/<target>.yaml, found by measurement: perfpred.kernels.fusion). Shapes come from the
same inference as `perfpred describe` (perfpred.features.description), so both always agree.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from perfpred import config
from perfpred.features import descriptors, shapes, weighted
from perfpred.features.description import _Walk

BYTES_PER_ELEMENT = 4  # float32 tensors and weights

#: kernel kinds, each with its own predictor (perfpred.kernels.predictor) and its own sampled zoo
KINDS: tuple[str, ...] = ("conv", "depthwise", "grouped", "transposed", "dense", "maxpool", "avgpool", "globalpool",
                          "add", "concat", "resize", "unary", "other")
#: layers that compute nothing at inference (no kernel at all)
NO_OPS = {"InputLayer", "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
          "FixedDropout", "StochasticDepth", "ActivityRegularization"}
#: layers that run one element-wise pass over their input when nothing fuses them
UNARY = {"BatchNormalization", "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Rescaling", "Normalization",
         "LayerScale", "LayerNormalization"}
MERGES = {"Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average"}
KIND_OF_CLASS = {"DepthwiseConv2D": "depthwise", "Conv2DTranspose": "transposed", "Deconvolution2D": "transposed",
                 "Dense": "dense", "MaxPooling2D": "maxpool", "MaxPool2D": "maxpool", "AveragePooling2D": "avgpool",
                 "AvgPool2D": "avgpool", "GlobalAveragePooling2D": "globalpool", "GlobalMaxPooling2D": "globalpool",
                 "GlobalAvgPool2D": "globalpool", "GlobalMaxPool2D": "globalpool", "Concatenate": "concat",
                 "UpSampling2D": "resize"} | dict.fromkeys(MERGES, "add") | dict.fromkeys(UNARY, "unary")
#: per-channel affine layers, which a runtime folds into the convolution before them (its weights and bias) only
#: while nothing non-linear lies between. After a non-linear activation (`Conv2D(activation="relu")` then
#: BatchNormalization, as every synthetic network has it) their rule key is `BatchNormalization:activated`, which
#: fuses only where a target's rules name it. Read from the runtimes' graphs of basic_model_c18_k5_f8_s1_32:
#: ONNX Runtime runs such a batch norm as a Mul and an Add after the fused Conv + Relu (a pass of its own); the
#: TFLite converter folds it into the convolution after it (18 CONV_2D ops, no MUL or ADD); TensorFlow keeps every
#: batch norm as ops of its own whichever side of the ReLU it is, as its kernel zoo's convolutions do. Measured by
#: benchmarks/bn_after_activation.py (2026-12-01, ms a batch norm adds before / after the ReLU): TF +0.181 / +0.156,
#: TFLite -0.002 / +0.009, ONNX Runtime +0.005 / +0.154
AFFINE = {"BatchNormalization"}
AFTER_ACTIVATION = "activated"
#: layers that apply a non-linear function (an `Activation` of `linear` does not)
ACTIVATION_LAYERS = {"Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax"}
#: activation functions the fusion rules' plain `Activation` key stands for: what benchmarks/kernels_fusion.py
#: measured it with (relu). Any other function has a key of its own, `Activation:<function>` (rule_key): swish, gelu
#: and sigmoid after a convolution cost their own pass on every host toolchain (their share 0.6-1.5, 2026-11-30),
#: where the plain key had let them run free inside it (EfficientNet's swish, ConvNeXt's gelu)
RELU_ACTIVATIONS = {"relu", "relu6", "linear"}
#: Keras' other names of one function (Keras 3 `silu`, multi-backend Keras' `_hard_swish`, `_relu6`)
ACTIVATION_ALIASES = {"silu": "swish", "hard_silu": "hard_swish", "_hard_swish": "hard_swish", "_relu6": "relu6"}
#: activation functions whose element-wise kernels cost a rate of their own per MB (KernelRegressor's `function_rates`),
#: by the rate they share; other functions (relu, batch norms, scalings) cost the unary kernels' common rate. Per MB
#: of a 40x40x96 tensor, after a 1x1 convolution, in ms (2026-12-01; relu fuses into it): TF sigmoid 0.114, swish
#: 0.059, gelu 0.218, hard_swish 0.058, tanh 0.054; TFLite 0.021 / 0.038 / 0.032 / 0.009 / 0.024; ONNX Runtime
#: 0.055 / 0.032 / 0.186 / 0.112 / 0.051, where one rate for every unary kernel priced each at 0.02-0.04
FUNCTION_RATES = {"swish": "swish", "sigmoid": "sigmoid", "tanh": "sigmoid", "elu": "sigmoid", "selu": "sigmoid",
                  "softplus": "sigmoid", "gelu": "gelu", "hard_swish": "hard_swish", "hard_sigmoid": "hard_swish"}
#: layers (not activation functions) whose element-wise kernel costs a rate of its own per MB, by rule key: a layer
#: norm reads its input twice (the mean and variance over channels, then the normalisation) and, as ONNX Runtime runs
#: tf2onnx's export of it, as ten element-wise ops (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add);
#: ConvNeXt runs one after each of its 18 depthwise convolutions. It was an `other` kernel priced as a zero padding,
#: and ConvNeXt was predicted 24 % too fast on ONNX Runtime (families left out, 2026-12-01)
CLASS_RATES = {"LayerNormalization": "layer_norm"}
#: where the zoo's kernels of a CLASS_RATES class are pooled for sampling (sampler.zoo_pools): where they were when
#: the kernel zoo's draws were made, so that moving their kind leaves every drawn kernel as it was
POOLED_AS = {"LayerNormalization": "other"}
#: every rate an element-wise kernel may cost at (Kernel.function), in the order predictors' columns take them
RATES: tuple[str, ...] = tuple(sorted(set(FUNCTION_RATES.values()) | set(CLASS_RATES.values())))
#: the numeric configuration of a kernel, in the order predictors read it
CONFIG_FIELDS: tuple[str, ...] = ("input_height", "input_width", "cin", "cout", "kernel_size", "strides", "groups",
                                  "inputs", "output_elements", "flops", "bytes_read", "bytes_written", "fused")


@dataclass
class Kernel:
    """One kernel: its kind, the layers fused in it, its configuration and its cost counts."""

    kind: str
    layers: list[str]
    input_shape: tuple
    output_shape: tuple
    cin: int
    cout: int
    kernel_size: int = 1
    strides: int = 1
    groups: int = 1
    inputs: int = 1
    flops: int = 0
    bytes_read: int = 0  # activations read and weights (weight_bytes) together
    bytes_written: int = 0
    classes: list[str] = field(default_factory=list)
    predicted_ms: float | None = None
    weight_bytes: int = 0  # of bytes_read, the weights' (and a fused batch-norm's vectors): what a model keeps, not feeds

    def features(self) -> dict:
        """The numeric configuration a kernel predictor reads (CONFIG_FIELDS)."""
        spatial = (tuple(self.input_shape) + (1, 1))[:2] if len(self.input_shape) >= 3 else (1, 1)
        return {"input_height": spatial[0], "input_width": spatial[1], "cin": self.cin, "cout": self.cout,
                "kernel_size": self.kernel_size, "strides": self.strides, "groups": self.groups,
                "inputs": self.inputs, "output_elements": shapes.elements(self.output_shape), "flops": self.flops,
                "bytes_read": self.bytes_read, "bytes_written": self.bytes_written, "fused": len(self.layers) - 1}

    @property
    def function(self) -> str:
        """The rate an element-wise kernel costs at: its layer's (CLASS_RATES: a layer norm's) or its activation
        function's (FUNCTION_RATES); "" for any other kernel."""
        if self.kind != "unary" or not self.classes:
            return ""
        if self.classes[0] in CLASS_RATES:
            return CLASS_RATES[self.classes[0]]
        if not self.classes[0].startswith("Activation:"):
            return ""
        return FUNCTION_RATES.get(self.classes[0].split(":", 1)[1], "")

    @property
    def affine(self) -> int:
        """How many per-channel affine layers (AFFINE: batch norms, whichever side of an activation) are fused in
        the kernel, after its own operator."""
        return sum(cls.split(":")[0] in AFFINE for cls in self.classes[1:])

    def as_dict(self) -> dict:
        """A JSON-ready dict of the kernel."""
        return asdict(self) | {"input_shape": list(self.input_shape), "output_shape": list(self.output_shape)}


def fusion_rules(target: str | None) -> dict[str, list[str]]:
    """Layer class -> kernel kinds it fuses into when it follows one (conf/kernels/<target>.yaml; none: no fusion),
    SKIP_KEY -> the kinds whose strided windows skip the input between them (_window_share), FUNCTION_RATES_KEY
    -> the kinds that price activation functions at rates of their own, and OVERHEAD_GROUPS_KEY -> the optional
    groups the whole-model overhead prices at factors of their own."""
    if target is None:
        return {}
    import yaml

    path = config.conf_dir() / "kernels" / f"{target}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml"))) or "none"
        raise config.ConfigError(f"no fusion rules for target {target!r} at {path}: known are {known}")
    document = yaml.safe_load(path.read_text()) or {}
    rules = {str(cls): list(kinds) for cls, kinds in (document.get("fuse") or {}).items()}
    for key in (SKIP_KEY, FUNCTION_RATES_KEY, OVERHEAD_GROUPS_KEY):  # not layer classes (the keys' comments say)
        if key in document:
            rules[key] = list(document[key] or [])
    for entry in rules.get(OVERHEAD_GROUPS_KEY, ()):
        if entry not in OPTIONAL_GROUPS:
            raise config.ConfigError(f"{path}: `{OVERHEAD_GROUPS_KEY}` entry {entry!r} is not an optional group of the "
                                     f"overhead: {', '.join(OPTIONAL_GROUPS)}")
    for entry in rules.get(FUNCTION_RATES_KEY, ()):
        kind, _, function = str(entry).partition(":")
        if kind not in KINDS or (function and function not in RATES):
            raise config.ConfigError(f"{path}: `{FUNCTION_RATES_KEY}` entry {entry!r} is not a kind ({', '.join(KINDS)}) "
                                     f"or kind:rate with a rate of {', '.join(RATES)}")
    return rules


def rule_key(cls: str, cfg: dict | None = None) -> str:
    """The fusion rules' key of a layer: its class, and for an `Activation` of another function than relu (or
    linear) `Activation:<function>` (`Activation:swish`, `Activation:gelu`), which fuses only where a rule names it."""
    if cls != "Activation":
        return cls
    function = (cfg or {}).get("activation") or "linear"
    if isinstance(function, dict):  # a serialized function object: its registered name
        function = function.get("config") if isinstance(function.get("config"), str) else function.get("class_name")
    function = ACTIVATION_ALIASES.get(str(function), str(function))
    return cls if function in RELU_ACTIVATIONS else f"{cls}:{function}"


class _Recorder(_Walk):
    """The shape walk of `describe`, keeping every layer call with the layers it reads."""

    def __init__(self, graph, input_size):
        super().__init__(graph, input_size, None)
        self.calls: list[tuple] = []  # (layer name, class, config, input shapes, stats, input layer names)
        self._current = None

    def call(self, graph, layer, inputs, count):
        if layer.inner is None and count:
            self._current = (layer, inputs)
        return super().call(graph, layer, inputs, count)

    def add(self, name, class_name, stats, graph, count):
        super().add(name, class_name, stats, graph, count)
        if self._current is not None and self._current[0].name == name:
            layer, inputs = self._current
            sources = [ref.layer for ref in layer.calls[0]] if layer.calls else []
            self.calls.append((name, class_name, layer.config, inputs, stats, sources))
            self._current = None


def _weights_bytes(stats: shapes.LayerStats) -> int:
    return stats.params * BYTES_PER_ELEMENT


#: the rules' key (fusion_rules) of the kinds whose windows, strided past their size, skip the input between them
#: (conf/kernels/<target>.yaml `strided_windows_skip:`); without it every windowed kind does
SKIP_KEY = "strided_windows_skip"
#: the rules' key of the kinds whose prior prices each activation function at a rate of its own (the kernel zoo's
#: `unary_by_function` draws teach it; perfpred.kernels.training.kernel_table); absent: every function at the common rate
FUNCTION_RATES_KEY = "function_rates"
#: the rules' key of the optional groups (OPTIONAL_GROUPS) the whole-model overhead prices at a factor of their own
#: (perfpred.kernels.predictor.KIND_GROUPS); absent: their kernels go with their kind's group
OVERHEAD_GROUPS_KEY = "overhead_groups"
#: the optional overhead group of the convolutions of a 1x1 window (perfpred.kernels.predictor.group_kind), which
#: join `conv` where a target's rules do not name it
POINTWISE = "pointwise"
#: the optional overhead groups a target's rules may name
OPTIONAL_GROUPS = (POINTWISE,)
WINDOWED_KINDS = ("conv", "grouped", "depthwise", "maxpool", "avgpool")


def window_share(window, strides) -> float:
    """The share of its input a window reads: where the stride exceeds the window (ResNet's 1x1 convolutions of
    stride 2, a max pool of size 2 and stride 4), the rows and columns between windows are never touched: a 1x1
    convolution of stride 2 reads a quarter of its input (dilation is not counted)."""
    return math.prod(min(1.0, w / max(s, 1)) for w, s in zip(window, strides, strict=False))


def _window_share(cls: str, cfg: dict, stats: shapes.LayerStats, skipping: tuple | list) -> float:
    """A layer's window_share; 1 for a layer without windows, and for a kind the target's runtime does not skip
    with (`skipping`: TFLite's pools read all of their input)."""
    if cls in ("MaxPooling2D", "MaxPool2D", "AveragePooling2D", "AvgPool2D"):
        window = shapes.pair(cfg.get("pool_size", 2), "pool_size")
        strides = shapes.pair(cfg.get("strides") or cfg.get("pool_size", 2), "strides")
    elif cls in ("Conv2D", "Convolution2D", "DepthwiseConv2D") and stats.kernel and "strides" in cfg:
        window, strides = stats.kernel, shapes.pair(cfg.get("strides") or 1, "strides")
    else:
        return 1.0
    kind = KIND_OF_CLASS.get(cls) or ("grouped" if int(cfg.get("groups", 1) or 1) > 1 else "conv")
    return window_share(window, strides) if kind in skipping else 1.0


def _base_kernel(name: str, cls: str, cfg: dict, inputs: list, stats: shapes.LayerStats,
                 skipping: tuple | list) -> list[Kernel]:
    """The kernel(s) of one layer before fusion (a separable convolution is a depthwise and a 1x1 kernel)."""
    first = tuple(inputs[0])
    out = tuple(stats.shape)
    read = (shapes.elements(first) * _window_share(cls, cfg, stats, skipping) + sum(shapes.elements(s) for s in inputs[1:])
            ) * BYTES_PER_ELEMENT + _weights_bytes(stats)
    read = int(round(read))
    written = shapes.elements(out) * BYTES_PER_ELEMENT
    macs_flops = stats.flops
    if stats.kernel is not None or cls == "Dense":  # the data's FLOPs count weight initialisers: not run here
        macs_flops -= weighted.INIT_FLOPS_PER_WEIGHT * sum(
            count for key, count in stats.weights.items() if key != "bias_regularizer")
    size = max(stats.kernel) if stats.kernel else 1
    stride = max(shapes.pair(cfg.get("strides", 1) or 1, "strides")) if "strides" in cfg else 1
    common = dict(input_shape=first, output_shape=out, cin=first[-1], cout=out[-1], flops=macs_flops,
                  bytes_read=read, bytes_written=written, classes=[rule_key(cls, cfg)], layers=[name],
                  weight_bytes=_weights_bytes(stats))
    if cls == "Dense" and len(first) == 3:
        # on a feature map (ConvNeXt's pointwise MLPs) a Dense is a 1x1 convolution: the same GEMM, and the same
        # time measured here on all three host toolchains (24x24x96 -> 384: 0.17 ms both on TFLite, 0.31-0.33 ms on
        # TF); the `dense` kernels are sampled and learnt on vectors, where a GEMV is bound by its weights
        return [Kernel("conv", kernel_size=1, strides=1, **common)]
    if cls in ("Conv2D", "Convolution2D"):
        groups = int(cfg.get("groups", 1) or 1)
        return [Kernel("grouped" if groups > 1 else "conv", kernel_size=size, strides=stride, groups=groups, **common)]
    if cls.startswith("Separable"):
        middle = (*out[:2], first[-1] * int(cfg.get("depth_multiplier", 1)))
        depth_flops = 2 * shapes.elements(middle) * size * size
        depth_weights = size * size * first[-1] * BYTES_PER_ELEMENT
        point_weights = middle[-1] * out[-1] * BYTES_PER_ELEMENT
        depthwise = Kernel("depthwise", [name], first, middle, first[-1], middle[-1], size, stride, first[-1], 1,
                           depth_flops, shapes.elements(first) * BYTES_PER_ELEMENT + depth_weights,
                           shapes.elements(middle) * BYTES_PER_ELEMENT, [cls], weight_bytes=depth_weights)
        pointwise = Kernel("conv", [name], middle, out, middle[-1], out[-1], 1, 1, 1, 1, max(macs_flops - depth_flops, 0),
                           shapes.elements(middle) * BYTES_PER_ELEMENT + point_weights, written, [cls],
                           weight_bytes=point_weights)
        return [depthwise, pointwise]
    if cls in ("MaxPooling2D", "MaxPool2D", "AveragePooling2D", "AvgPool2D"):
        pool = max(shapes.pair(cfg.get("pool_size", 2), "pool_size"))
        stride = max(shapes.pair(cfg.get("strides") or cfg.get("pool_size", 2), "strides"))
        return [Kernel(KIND_OF_CLASS[cls], kernel_size=pool, strides=stride, **common)]
    if cls == "DepthwiseConv2D":
        return [Kernel("depthwise", kernel_size=size, strides=stride, groups=first[-1], **common)]
    if cls in KIND_OF_CLASS:
        kind = KIND_OF_CLASS[cls]
        size = max(shapes.pair(cfg.get("size", 2), "size")) if kind == "resize" else size
        flops = max(macs_flops, shapes.elements(out)) if kind in ("add", "unary", "concat", "resize") else macs_flops
        return [Kernel(kind, kernel_size=size, strides=stride, inputs=len(inputs), **(common | {"flops": flops}))]
    return [Kernel("other", inputs=len(inputs), **common)]  # padding, reshape, softmax, Lambda...


def _activation_kernel(name: str, producer: Kernel, key: str) -> Kernel:
    """The pass of a layer's own activation (`Conv2D(..., activation="swish")`) where no rule fuses it: what an
    `Activation` layer after it would be."""
    out = tuple(producer.output_shape)
    elements = shapes.elements(out)
    return Kernel("unary", [name], out, out, out[-1], out[-1], flops=elements, bytes_read=elements * BYTES_PER_ELEMENT,
                  bytes_written=elements * BYTES_PER_ELEMENT, classes=[key])


def detect_graph(graph: descriptors.Graph, rules: dict[str, list[str]], input_size: int | None = None) -> list[Kernel]:
    """The kernels of a parsed graph under fusion rules (layer class -> kinds it fuses into)."""
    walk = _Recorder(graph, input_size)
    walk.run(graph, None)
    consumers: dict[str, int] = {}
    for *_, sources in walk.calls:
        for source in sources:
            consumers[source] = consumers.get(source, 0) + 1
    kernels: list[Kernel] = []
    last_of: dict[str, Kernel] = {}  # layer name -> the kernel that produces its output
    activated: set[int] = set()  # ids of the kernels whose output has been through a non-linear activation
    for name, cls, cfg, inputs, stats, sources in walk.calls:
        if cls in NO_OPS:
            if sources and sources[0] in last_of:
                last_of[name] = last_of[sources[0]]
            continue
        if cls in ("Flatten", "Reshape") and sources and sources[0] in last_of:
            last_of[name] = last_of[sources[0]]  # a view: no data moves
            continue
        producer = last_of.get(sources[0]) if len(sources) == 1 else None
        key = fusion_key(rule_key(cls, cfg), producer, activated)
        if producer is not None and producer.kind in rules.get(key, ()) and consumers.get(sources[0], 0) == 1:
            if _nonlinear(cls, cfg):
                activated.add(id(producer))
            producer.layers.append(name)
            producer.classes.append(key)
            producer.flops += stats.flops
            producer.bytes_read += _weights_bytes(stats)  # a fused BN still reads its per-channel vectors
            producer.weight_bytes += _weights_bytes(stats)
            last_of[name] = producer
            continue
        made = _base_kernel(name, cls, cfg, inputs, stats, rules.get(SKIP_KEY, WINDOWED_KINDS))
        own = rule_key("Activation", cfg) if cls != "Activation" else cls  # the layer's own `activation` argument
        if own != "Activation" and made[-1].kind not in rules.get(own, ()):  # Conv2D(activation="swish"): two kernels
            made.append(_activation_kernel(name, made[-1], own))
        if _nonlinear(cls, cfg):
            activated.add(id(made[-1]))
        kernels.extend(made)
        last_of[name] = made[-1]
    return kernels


def fusion_key(key: str, producer: Kernel | None, activated: set[int]) -> str:
    """The rule key a layer fuses by: `key`, or for an AFFINE layer after a kernel whose output went through a
    non-linear activation (its id in `activated`) `<key>:activated`, which fuses only where a rule names it."""
    if key in AFFINE and producer is not None and id(producer) in activated:
        return f"{key}:{AFTER_ACTIVATION}"
    return key


def _nonlinear(cls: str, cfg: dict | None) -> bool:
    """Whether a layer ends in a non-linear function: an activation layer, or another layer's own `activation`."""
    function = (cfg or {}).get("activation") or "linear"
    return (cls in ACTIVATION_LAYERS and cls != "Activation") or function != "linear"


def detect(source, target: str | None = None, input_size: int | None = None) -> list[Kernel]:
    """The kernels of a Keras descriptor (path, JSON dict or string) or an ONNX file (perfpred.kernels.onnx_kernels)
    under a target's fusion rules."""
    return detect_with_rules(source, fusion_rules(target), input_size)


def detect_with_rules(source, rules: dict[str, list[str]], input_size: int | None = None) -> list[Kernel]:
    """The kernels of a parsed Graph, an ONNX file or a Keras descriptor (path, JSON dict or string) under fusion rules."""
    from perfpred.features import onnx_loading

    if isinstance(source, descriptors.Graph):
        return detect_graph(source, rules, input_size)
    if isinstance(source, str) and source.lstrip().startswith("{"):
        source = json.loads(source)
    if onnx_loading.is_onnx_file(source):
        from perfpred.kernels.onnx_kernels import detect_onnx

        return detect_onnx(Path(source), rules, input_size)
    return detect_graph(descriptors.load(source if isinstance(source, dict) else Path(source)), rules, input_size)


def totals(kernels: list[Kernel]) -> dict:
    """Counts per kind, and FLOPs and bytes of all kernels together."""
    counts = {kind: sum(k.kind == kind for k in kernels) for kind in KINDS}
    return counts | {"kernels": len(kernels), "flops": sum(k.flops for k in kernels),
                     "bytes": sum(k.bytes_read + k.bytes_written for k in kernels)}
