"""The kernel zoo: seeded configurations per kernel kind, over the ranges the model zoo's own kernels use.

Each configuration becomes a single-kernel Keras JSON descriptor (built with Keras, never with weights), so
the measurement harness measures it exactly as it measures a whole model. Kinds that no zoo model holds
(grouped and transposed convolutions, resizes) take the spatial sizes and channels of the zoo's plain
convolutions. `adapt` draws more configurations around the ones the first predictor got most wrong.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

from perfpred.kernels.detector import CLASS_RATES, KINDS, POOLED_AS, Kernel, detect

#: the layers that follow a convolution in a sampled conv-like kernel (the fusion rules decide if they fuse)
CONV_TAIL = ("bn", "relu")
MAX_FLOPS = 1.5e9  # a sampled kernel costs at most this much: it is measured in well under a second
#: and holds at most this many weights (64 MB of float32). Converting and exporting a kernel costs time with its
#: weights: three VGG heads at large widths (a Dense of 135k-245k inputs, up to 110 M weights) took 59 of the 204 s
#: the TFLite kernel stage spent besides timing (a fresh clone, 2026-11-30), and as much on ONNX Runtime. A Dense
#: on a vector is bound by its weights, which the kernel prior prices per MB: it extrapolates linearly.
MAX_WEIGHTS = 16e6
MIN_SPATIAL = 1


def zoo_pools(descriptors: Iterable[Path]) -> dict[str, list[Kernel]]:
    """Every kernel of the zoo's descriptors, by kind (no fusion: the bare operators and their shapes); a layer
    class of detector.POOLED_AS under the kind it was pooled as when the draws were made."""
    pools: dict[str, list[Kernel]] = {kind: [] for kind in KINDS}
    for path in descriptors:
        try:
            for kernel in detect(path):
                pools[POOLED_AS.get((kernel.classes or [""])[0], kernel.kind)].append(kernel)
        except (ValueError, KeyError):
            continue  # a descriptor describe refuses has no shapes to learn ranges from
    return pools


def _channels(rng: random.Random, value: int) -> int:
    """A channel count near `value` (x0.5 to x2): odd counts a third of the time, else multiples of 8."""
    scaled = value * 2 ** rng.uniform(-1.0, 1.0)
    if rng.random() < 1 / 3:
        return max(int(round(scaled)), 1)
    return max(int(round(scaled / 8)) * 8, 8)


def _spatial(rng: random.Random, value: int) -> int:
    return max(int(round(value * 2 ** rng.uniform(-0.5, 0.5))), MIN_SPATIAL)


def _costs(pool: list[Kernel]) -> list[float]:
    return [(k.flops + k.bytes_read + k.bytes_written) ** 0.5 + 1.0 for k in pool]


def sample_spec(kind: str, pools: dict[str, list[Kernel]], rng: random.Random, near: dict | None = None) -> dict:
    """One configuration of a kind: a zoo kernel's (or `near`'s) shape, jittered; the kinds' own parameters drawn."""
    pool = pools.get(kind) or []
    if near is None:
        pool = pool or pools["conv"]
        # half the draws as the zoo has them (mostly small late-stage kernels), half weighted by cost: the
        # large early kernels are few in the zoo but most of a model's time
        source = rng.choice(pool) if rng.random() < 0.5 else rng.choices(pool, weights=_costs(pool))[0]
        shape = tuple(source.input_shape)
        base = {"h": shape[0] if len(shape) == 3 else 1, "cin": shape[-1], "cout": source.cout,
                "k": source.kernel_size, "s": source.strides}
    else:
        base = {"h": near["h"], "cin": near["cin"], "cout": near["cout"], "k": near["k"], "s": near["s"]}
    spec = {"kind": kind, "h": _spatial(rng, base["h"]), "cin": _channels(rng, base["cin"]),
            "cout": _channels(rng, base["cout"]), "k": base["k"], "s": base["s"]}
    if kind in ("conv", "depthwise"):
        spec["k"] = base["k"] if pool and rng.random() < 0.7 else rng.choice([1, 3, 5, 7] if kind == "conv" else [3, 5])
        spec["s"] = rng.choice([1, 1, 2]) if spec["k"] > 1 else 1
    elif kind == "grouped" and near is None and rng.random() < 0.5:
        # a channel per group, as the zoo's own grouped convolutions (ConvNeXt's 7x7 ones, groups = channels) have it:
        # a depthwise convolution run as a grouped one, which costs otherwise than either a DepthwiseConv2D or a few
        # wide groups
        spec |= {"groups": spec["cin"], "cout": spec["cin"], "k": base["k"], "s": 1}
    elif kind == "grouped":
        groups = near["groups"] if near is not None and "groups" in near else rng.choice([2, 4, 8, 16, 32])
        spec |= {"groups": groups, "k": rng.choice([3, 3, 1]), "s": rng.choice([1, 1, 2]),
                 "cin": max(spec["cin"] // groups, 1) * groups, "cout": max(spec["cout"] // groups, 1) * groups}
    elif kind == "transposed":
        spec |= {"h": max(spec["h"] // 2, 2), "k": rng.choice([2, 3, 4]), "s": rng.choice([2, 2, 1])}
    elif kind in ("maxpool", "avgpool"):
        spec |= {"k": rng.choice([2, 3]), "s": rng.choice([2, 2, 1])}
    elif kind == "resize":
        spec |= {"h": max(spec["h"] // 2, 1), "k": 2}
    elif kind == "dense":
        spec |= {"h": 1}
    return _bounded(spec)


def grouped_in_place_of_conv(pools: dict[str, list[Kernel]], rng: random.Random) -> dict:
    """A grouped convolution where ResNeXt, RegNet and ShuffleNet put theirs: in place of a plain convolution of the
    zoo (its shape, drawn by cost), with a few to a few dozen channels per group.

    The zoo's own grouped convolutions (ConvNeXt's) all have a channel per group, and the other grouped draws take
    their shapes, so that no sampled grouped kernel looked like a ResNeXt's: 3x3, 32 groups of 4 channels, at 56 px.
    The two cost up to 40x apart per FLOP on TensorFlow, where a grouped convolution runs through XLA
    (`python benchmarks/kernels_novel.py`: a ResNeXt predicted 64-67 % too fast there). Marked `in_place_of_conv`.
    """
    source = rng.choices(pools["conv"], weights=_costs(pools["conv"]))[0]  # the large early kernels: most of the time
    shape = tuple(source.input_shape)
    h = shape[0] if len(shape) == 3 else 1
    cin = max(_channels(rng, shape[-1]), 16)  # the zoo's first convolutions (3 channels in) are never grouped
    cout = cin if rng.random() < 0.5 else _channels(rng, source.cout)  # a bottleneck's grouped convolution keeps its width
    if rng.random() < 0.5:  # a fixed number of groups (ResNeXt's 32, ShuffleNet's 3 or 8)
        groups = rng.choice([2, 3, 4, 8, 16, 32, 64])
    else:  # a fixed width per group (RegNet's 8 to 64 channels, ResNeXt 32x4d's 4)
        groups = max(cin // rng.choice([2, 4, 8, 16, 32, 64]), 2)
    spec = {"kind": "grouped", "h": _spatial(rng, h), "cin": max(cin // groups, 1) * groups,
            "cout": max(cout // groups, 1) * groups, "k": rng.choice([3, 3, 1]), "s": rng.choice([1, 1, 2]),
            "groups": groups}
    return _bounded(spec) | {"in_place_of_conv": True}


def depthwise_by_window(pools: dict[str, list[Kernel]], rng: random.Random) -> dict:
    """A depthwise convolution whose window is drawn uniformly among the sizes the zoo's depthwise convolutions have
    (3, 5 and 7: NASNet's separable ones), the shape of a zoo depthwise convolution of that size (its spatial size and
    channels jittered, its stride kept).

    sample_spec draws depthwise windows from the zoo's (mostly 3x3 and 5x5) or among 3 and 5: the kernel zoo of
    2026-12-01 held no 7x7 depthwise convolution, which TFLite's runs 5-10x slower per FLOP than its 3x3 and 5x5
    ones (a generic path; timed alone, NASNetMobile_96's 7x7 ones cost 0.35 ms where the predictor said 0.04), and
    NASNet was predicted 1.8x too fast there (its whole-model kernel prediction 1.95 ms against 3.55 measured).
    """
    pool = pools.get("depthwise") or []
    if not pool:
        return sample_spec("depthwise", pools, rng)
    window = rng.choice(sorted({k.kernel_size for k in pool}))
    source = rng.choice([k for k in pool if k.kernel_size == window])
    shape = tuple(source.input_shape)
    cin = _channels(rng, shape[-1])
    spec = {"kind": "depthwise", "h": _spatial(rng, shape[0] if len(shape) == 3 else 1), "cin": cin, "cout": cin,
            "k": window, "s": source.strides}
    return _bounded(spec)


#: the activation functions unary_by_function draws, one per rate of detector.FUNCTION_RATES
DRAWN_FUNCTIONS = ("swish", "sigmoid", "gelu", "hard_swish")


def unary_by_function(pools: dict[str, list[Kernel]], rng: random.Random) -> dict:
    """An activation function of its own (drawn uniformly among DRAWN_FUNCTIONS) on the tensor of a zoo unary kernel
    (drawn by cost: the large early ones), its channels jittered.

    The kind's other draws are batch norms and ReLUs (`build`), while the zoo's networks run swish (EfficientNet),
    hard swish (MobileNetV3) and gelu (ConvNeXt) on as large tensors: after a convolution, they cost TF 2-11x, TFLite
    2-8x and ONNX Runtime up to 5x what a unary kernel of that size was predicted to (detector.FUNCTION_RATES)."""
    pool = [k for k in pools.get("unary") or [] if len(k.output_shape) == 3] or pools["conv"]
    return _unary_on(pool, rng) | {"fn": rng.choice(DRAWN_FUNCTIONS)}


def _unary_on(pool: list[Kernel], rng: random.Random) -> dict:
    """A unary kernel on the output tensor of a kernel of `pool` (drawn by cost: the large early ones), its channels
    jittered."""
    source = rng.choices(pool, weights=_costs(pool))[0]
    shape = tuple(source.output_shape)
    cin = _channels(rng, shape[-1])
    return _bounded({"kind": "unary", "h": _spatial(rng, shape[0]), "cin": cin, "cout": cin, "k": 1, "s": 1})


#: the `fn` of a layer-norm draw (unary_layer_norm): detector.CLASS_RATES' rate of a LayerNormalization
LAYER_NORM = CLASS_RATES["LayerNormalization"]


def unary_layer_norm(pools: dict[str, list[Kernel]], rng: random.Random) -> dict:
    """A layer norm over the channels (Keras' LayerNormalization on the last axis, as ConvNeXt's) on the tensor of
    one of the zoo's layer norms (drawn by cost), its channels jittered; without one in the zoo, a unary kernel's.

    Its kernel is a unary one with a rate of its own (detector.CLASS_RATES): it reads its input twice and, exported
    to ONNX, runs as ten element-wise ops, where a unary kernel of the zoo is a single pass."""
    norms = [k for k in pools.get("other") or [] if k.classes[:1] == ["LayerNormalization"] and len(k.output_shape) == 3]
    pool = norms or [k for k in pools.get("unary") or [] if len(k.output_shape) == 3] or pools["conv"]
    return _unary_on(pool, rng) | {"fn": LAYER_NORM}


#: the smallest spatial size a decoder's transposed convolution upsamples to (transposed_as_decoders)
DECODER_MIN_PX = 14


def transposed_as_decoders(pools: dict[str, list[Kernel]], rng: random.Random) -> dict:
    """A transposed convolution where a decoder (U-Net, segmentation and generator heads) has one: stride 2, a window
    of 2-4, upsampling to the spatial size of a plain convolution of the zoo (drawn by cost: the large early ones)
    and giving its output channels, from twice as many or as many.

    The source is drawn among the zoo's convolutions whose output is DECODER_MIN_PX or more (uniformly: drawn by
    cost, the wide late-stage ones came first, and the cost bound shrank their spatial size back to 2-9 px); a draw
    over the cost bound is made narrower, not smaller.

    The zoo holds no transposed convolution, and sample_spec's draws take half a convolution's spatial size from a
    zoo kernel drawn mostly as the zoo has them (small late-stage ones): the kernel zoo's 16 transposed convolutions
    of 2026-12-01 read inputs of 2-31 px, where a decoder's run at 14-112. On TFLite a stride-2 transposed convolution
    runs at a quarter of a stride-1 one's speed per FLOP, which the small draws could not tell apart from their size
    (a U-Net's timed alone at 20-80 px ran at 0.42-0.66x the predicted speed: benchmarks/kernels_novel.py's unet,
    which this stream was added after, so that figure is no longer blind to transposed convolutions).
    """
    resolutions = [k for k in pools["conv"] if len(k.output_shape) == 3 and k.output_shape[0] >= DECODER_MIN_PX]
    source = rng.choice(resolutions or pools["conv"])
    cout = _channels(rng, max(source.cout, 8))
    spec = {"kind": "transposed", "h": max(_spatial(rng, source.output_shape[0]) // 2, 2), "cout": cout,
            "cin": cout * rng.choice([1, 2]), "k": rng.choice([2, 3, 4]), "s": 2}
    while (_spec_flops(spec) > MAX_FLOPS or _spec_weights(spec) > MAX_WEIGHTS) and spec["cout"] > 8:
        spec["cin"], spec["cout"] = max(spec["cin"] // 2, 8), max(spec["cout"] // 2, 8)  # narrower, not smaller
    return _bounded(spec)


#: kinds whose windows may stride past their size in the zoo: ResNet's 1x1 convolutions of stride 2 (its shortcut
#: projections), the synthetic networks' 1x1 ones and their max pools of size 2-3 and stride 3-5
STRIDED_KINDS = ("conv", "maxpool", "avgpool")


def strided_beyond_kernel(pools: dict[str, list[Kernel]], rng: random.Random) -> dict:
    """A convolution or pooling whose stride exceeds its size, as the zoo has them (its size and stride kept): it
    reads only its windows' rows and columns of the input (detector.window_share), which no other draw teaches.

    sample_spec draws strides of 1-2 at sizes of 2 and more (a 1x1 convolution has stride 1 there): the kernel zoo
    had no such kernel, while 151 of the zoo's convolutions and 47 of its poolings are so, and a third of the
    synthetic networks' time on ONNX Runtime went to predicting their pools (up to 2.4x too slow, 2026-11-30)."""
    strided = {kind: [k for k in pools.get(kind, []) if k.strides > k.kernel_size] for kind in STRIDED_KINDS}
    kind = rng.choice([kind for kind, found in strided.items() if found] or ["conv"])
    pool = strided[kind] or pools["conv"]
    source = rng.choice(pool) if rng.random() < 0.5 else rng.choices(pool, weights=_costs(pool))[0]
    shape = tuple(source.input_shape)
    cin = _channels(rng, shape[-1])
    spec = {"kind": kind, "h": _spatial(rng, shape[0] if len(shape) == 3 else 1), "cin": cin,
            "cout": _channels(rng, source.cout) if kind == "conv" else cin, "k": source.kernel_size,
            "s": max(source.strides, source.kernel_size + 1)}
    return _bounded(spec)


def _bounded(spec: dict) -> dict:
    """The configuration shrunk (spatial size first, then channels) under MAX_FLOPS and MAX_WEIGHTS."""
    if spec["h"] < spec["k"]:
        spec["h"] = spec["k"]
    while _spec_flops(spec) > MAX_FLOPS and spec["h"] > spec["k"]:
        spec["h"] = max(spec["h"] // 2, spec["k"])
    while _spec_flops(spec) > MAX_FLOPS and min(spec["cin"], spec["cout"]) > 16:
        spec["cin"], spec["cout"] = spec["cin"] // 2, spec["cout"] // 2
        if "groups" in spec:
            spec["cin"], spec["cout"] = (max(c // spec["groups"], 1) * spec["groups"] for c in (spec["cin"], spec["cout"]))
    while _spec_weights(spec) > MAX_WEIGHTS and max(spec["cin"], spec["cout"]) > 16:
        wider = "cin" if spec["cin"] >= spec["cout"] else "cout"
        spec[wider] = spec[wider] // 2
        if "groups" in spec:
            spec[wider] = max(spec[wider] // spec["groups"], 1) * spec["groups"]
    return spec


def _spec_weights(spec: dict) -> float:
    """The weights a configuration's kernel holds (its convolution or dense matrix)."""
    cin, cout, k = spec["cin"], spec["cout"], spec["k"]
    if spec["kind"] in ("conv", "grouped", "transposed"):
        return float(k * k * (cin // spec.get("groups", 1)) * cout)
    if spec["kind"] == "dense":
        return float(cin * cout)
    return float(k * k * cin) if spec["kind"] == "depthwise" else 0.0


def _spec_flops(spec: dict) -> float:
    h, cin, cout, k = spec["h"], spec["cin"], spec["cout"], spec["k"]
    per_group = cin // spec.get("groups", 1)
    if spec["kind"] in ("conv", "grouped"):
        return 2.0 * (h / spec["s"]) ** 2 * cout * k * k * per_group
    if spec["kind"] == "transposed":
        return 2.0 * h * h * cin * cout * k * k
    if spec["kind"] == "dense":
        return 2.0 * cin * cout
    return float(h * h * cin * k * k)


#: Chains measure what a kernel costs inside a model beyond its work (dispatching it, and whatever the runtime does
#: between two kernels): N tiny kernels of one kind in a row, each keeping its input's shape, N in CHAIN_LENGTHS; the
#: difference of the two chains' latencies over the difference of their lengths is a kernel's in-model cost, the one
#: call of the model cancelling out. Tiny tensors (CHAIN_SHAPE: 4x4 pixels of 16 channels, a vector of 64) leave the
#: kernels' own work at a few nanoseconds. On host-cpu-tf (2026-12-01): conv (with its batch norm and ReLU) 13.6 us a
#: kernel, depthwise 14.0, max pool 3.6, dense 5.7, add and sigmoid ~0 (TensorFlow fuses chains of element-wise ops);
#: on TFLite 0.02-0.15 us, on ONNX Runtime 0.2-0.4 us.
CHAIN_KINDS = ("conv", "depthwise", "maxpool", "add", "unary", "dense")
CHAIN_LENGTHS = (1, 17)
CHAIN_SHAPE = {"h": 4, "c": 16, "vector": 64}


#: the name part of a conv-like kernel measured without its batch norm (without_batch_norm)
NO_BATCH_NORM = "nobn"
#: kinds the kernel zoo measures with a batch norm after the operator (`build`), which a model's kernel may lack
BATCH_NORM_KINDS = ("conv", "depthwise", "grouped", "transposed")
#: a pair's kernel writes at least this many output elements, so that its batch norm costs more than the timing's noise
PAIR_MIN_OUTPUT = 50_000


def output_elements(spec: dict) -> int:
    """Output elements of a conv-like configuration ("same" padding)."""
    size = spec["h"] * spec["s"] if spec["kind"] == "transposed" else -(-spec["h"] // spec["s"])
    return int(size * size * (spec["cin"] if spec["kind"] == "depthwise" else spec["cout"]))


def without_batch_norm(specs: list[dict], count: int, rng: random.Random) -> list[dict]:
    """Copies of `count` of the profile's conv and depthwise configurations without their batch norm (ReLU kept):
    each pair's difference is what the batch norm costs (predictor.fit_batch_norm_rate).

    The kernel zoo measures every convolution with a batch norm and a ReLU after it (`build`), the commonest kernel
    of the zoo's networks, but a model's convolution may have none after it: a VGG's, a DenseNet's (its batch norms
    come before the convolution), the synthetic networks' unnormalised ones, the depthwise half of a separable
    convolution (NASNet, Xception). On TensorFlow a batch norm is a pass of its own over the output: stacked in a
    model, it added 0.061 / 0.030 / 0.017 ms to a 3x3 depthwise or a 1x1 convolution of 80x80x24 / 40x40x64 /
    20x20x128 (~0.08 ms per MB written, 0.03-0.07 ms for the convolutions themselves); TFLite and ONNX Runtime fold
    it into the convolution (+0.000-0.002 ms)."""
    candidates = [s for s in specs if s["kind"] in ("conv", "depthwise") and output_elements(s) >= PAIR_MIN_OUTPUT]
    return [s | {"bn": False} for s in rng.sample(candidates, min(count, len(candidates)))]


def chain_specs(kinds: Iterable[str] = CHAIN_KINDS, lengths: Iterable[int] = CHAIN_LENGTHS) -> list[dict]:
    """The chains of a profile: each kind at each length."""
    return [{"kind": "chain", "of": kind, "n": int(n)} for kind in kinds for n in lengths]


def build_chain(spec: dict):
    """The keras.Model of a chain: `n` kernels of kind `of` in a row, each keeping the shape of its input."""
    import keras
    from keras import layers

    kind, n = spec["of"], int(spec["n"])
    if kind not in CHAIN_KINDS:
        raise ValueError(f"no chain of {kind!r} kernels: chains are built of {', '.join(CHAIN_KINDS)}")
    if kind == "dense":
        first = x = keras.Input((CHAIN_SHAPE["vector"],))
    else:
        first = x = keras.Input((CHAIN_SHAPE["h"], CHAIN_SHAPE["h"], CHAIN_SHAPE["c"]))
    for _ in range(n):
        if kind == "conv":
            x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(CHAIN_SHAPE["c"], 1, use_bias=False)(x)))
        elif kind == "depthwise":
            x = layers.ReLU()(layers.BatchNormalization()(layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)))
        elif kind == "maxpool":
            x = layers.MaxPooling2D(3, strides=1, padding="same")(x)
        elif kind == "add":
            x = layers.Add()([x, first])
        elif kind == "unary":
            x = layers.Activation("sigmoid")(x)  # not idempotent: a runtime cannot drop the repeats
        else:
            x = layers.Dense(CHAIN_SHAPE["vector"], activation="relu")(x)
    return keras.Model(first, x, name=spec_name(spec))


def build(spec: dict):
    """The single-kernel keras.Model of a configuration (or a chain's model, build_chain)."""
    import keras
    from keras import layers

    if spec["kind"] == "chain":
        return build_chain(spec)
    kind, h, cin, cout, k, s = (spec[key] for key in ("kind", "h", "cin", "cout", "k", "s"))
    image = keras.Input((h, h, cin))
    inputs, x = [image], image
    if kind in ("conv", "grouped", "transposed", "depthwise"):
        if kind == "depthwise":
            x = layers.DepthwiseConv2D(k, strides=s, padding="same", use_bias=False)(x)
        elif kind == "transposed":
            x = layers.Conv2DTranspose(cout, k, strides=s, padding="same", use_bias=False)(x)
        else:
            x = layers.Conv2D(cout, k, strides=s, padding="same", use_bias=False, groups=spec.get("groups", 1))(x)
        if spec.get("bn", True):
            x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    elif kind == "dense":
        inputs = [keras.Input((cin,))]
        x = layers.Activation("relu")(layers.Dense(cout)(inputs[0]))
    elif kind in ("maxpool", "avgpool"):
        pooling = layers.MaxPooling2D if kind == "maxpool" else layers.AveragePooling2D
        x = pooling(k, strides=s, padding="same")(x)
    elif kind == "globalpool":
        x = layers.GlobalAveragePooling2D()(x)
    elif kind in ("add", "concat"):
        other = keras.Input((h, h, cin if kind == "add" else cout))
        inputs.append(other)
        x = (layers.Add() if kind == "add" else layers.Concatenate())([image, other])
    elif kind == "resize":
        x = layers.UpSampling2D(k)(x)
    elif kind == "unary" and spec.get("fn") == LAYER_NORM:
        x = layers.LayerNormalization(epsilon=1e-6)(x)
    elif kind == "unary" and spec.get("fn"):
        x = layers.Activation(spec["fn"])(x)
    elif kind == "unary":
        x = layers.BatchNormalization()(x) if cout % 2 else layers.Activation("relu")(x)
    else:  # other: a zero padding, the commonest layer of its kind in the zoo
        x = layers.ZeroPadding2D(1)(x)
    return keras.Model(inputs, x, name=spec_name(spec))


def spec_name(spec: dict) -> str:
    """A file-safe name that identifies a configuration."""
    if spec["kind"] == "chain":
        return f"chain_{spec['of']}_n{spec['n']}"
    parts = [spec["kind"], f"h{spec['h']}", f"c{spec['cin']}", f"o{spec['cout']}", f"k{spec['k']}", f"s{spec['s']}"]
    if spec.get("groups"):
        parts.append(f"g{spec['groups']}")
    if spec.get("bn", True) is False:
        parts.append(NO_BATCH_NORM)
    if spec.get("fn"):
        parts.append("a" + spec["fn"].replace("_", "-"))
    return "_".join(parts)


#: draws from streams of their own, after the kinds' (each seeded by its name, its count the profile's key of that
#: name): adding one, or changing how many it draws, leaves every other draw, and so every kernel already measured,
#: as it was
STREAMS = (grouped_in_place_of_conv, strided_beyond_kernel, transposed_as_decoders, depthwise_by_window,
           unary_by_function, unary_layer_norm)


def plan(profile: dict, pools: dict[str, list[Kernel]], seed: int) -> list[dict]:
    """The configurations of a profile (counts per kind), seeded, without duplicates."""
    rng = random.Random(seed)
    specs, seen = [], set()
    for kind in KINDS:
        wanted = int((profile.get("per_kind") or {}).get(kind, profile.get("default_per_kind", 0)))
        specs += _unique_draws(wanted, lambda kind=kind: sample_spec(kind, pools, rng), seen)
    for stream in STREAMS:
        draws = random.Random(f"{seed}:{stream.__name__}")
        wanted = int(profile.get(stream.__name__, 0))
        specs += _unique_draws(wanted, lambda stream=stream, draws=draws: stream(pools, draws), seen)
    specs += without_batch_norm(specs, int(profile.get("without_batch_norm", 0)), random.Random(f"{seed}:bn"))
    chains = profile.get("chains") or {}
    if chains:
        specs += chain_specs(chains.get("kinds", CHAIN_KINDS), chains.get("lengths", CHAIN_LENGTHS))
    return specs


def _unique_draws(wanted: int, draw, seen: set[str]) -> list[dict]:
    """Up to `wanted` configurations from `draw()` whose names are not in `seen` (which takes them), in 20 attempts
    a configuration."""
    specs, attempts = [], 0
    while len(specs) < wanted and attempts < 20 * wanted + 20:
        attempts += 1
        spec = draw()
        if spec_name(spec) not in seen:
            seen.add(spec_name(spec))
            specs.append(spec)
    return specs


def adapt(worst: list[dict], per_config: int, pools: dict[str, list[Kernel]], seed: int, taken: set[str]) -> list[dict]:
    """More configurations near the worst-predicted ones (nn-Meter's adaptive round), from a random stream per kind:
    a change to one kind's worst leaves the other kinds' draws as they were. A draw keeps its worst's window,
    stride, groups and activation function (a gelu's neighbours are gelus)."""
    streams: dict[str, random.Random] = {}
    specs = []
    for near in worst:
        rng = streams.setdefault(near["kind"], random.Random(f"{seed + 1}:{near['kind']}"))
        for _ in range(per_config):
            spec = sample_spec(near["kind"], pools, rng, near) | {
                key: near[key] for key in ("k", "s", "groups", "fn") if key in near}
            if spec.get("groups"):
                spec["cin"], spec["cout"] = (max(c // spec["groups"], 1) * spec["groups"] for c in (spec["cin"], spec["cout"]))
            if spec_name(spec) not in taken:
                taken.add(spec_name(spec))
                specs.append(spec)
    return specs


def write(specs: list[dict], folder: Path) -> list[Path]:
    """Write each configuration's descriptor as <folder>/<name>.json (an existing file is kept: same name, same model)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in specs:
        path = folder / f"{spec_name(spec)}.json"
        if not path.exists():
            path.write_text(build(spec).to_json())
        paths.append(path)
    return paths

