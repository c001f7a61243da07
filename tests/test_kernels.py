"""Kernel detection, the kernel zoo's sampler and the kernel predictors (perfpred.kernels)."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest

from perfpred.features.descriptors import DescriptorError
from perfpred.kernels import detector, measurement, predictor, sampler

RULES = {"BatchNormalization": ["conv", "depthwise"], "Activation": ["conv", "depthwise", "dense"],
         "Activation:softmax": ["dense"]}


def _descriptor(build) -> dict:
    import keras

    keras.utils.set_random_seed(0)
    return json.loads(build().to_json())


def _residual_block():
    import keras
    from keras import layers

    image = keras.Input((16, 16, 8))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(image)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.Activation("relu", name="relu")(x)
    x = layers.Add(name="add")([x, image])
    x = layers.SeparableConv2D(12, 3, strides=2, padding="same", name="sep")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.2, name="drop")(x)
    x = layers.Dense(10, activation="softmax", name="head")(x)
    return keras.Model(image, x)


def test_conv_bn_relu_fuse_under_rules_and_stay_apart_without():
    descriptor = _descriptor(_residual_block)
    fused = detector.detect_graph(detector.descriptors.parse(descriptor), RULES)
    assert [k.kind for k in fused] == ["conv", "add", "depthwise", "conv", "globalpool", "dense"]
    assert fused[0].layers == ["conv", "bn", "relu"]
    bare = detector.detect_graph(detector.descriptors.parse(descriptor), {})
    assert [k.kind for k in bare][:4] == ["conv", "unary", "unary", "add"]


def test_a_tensor_read_twice_is_not_fused_into_its_producer():
    import keras
    from keras import layers

    def branch():
        image = keras.Input((8, 8, 4))
        x = layers.Conv2D(4, 1, name="conv")(image)
        a = layers.BatchNormalization(name="bn")(x)
        return keras.Model(image, layers.Add(name="add")([a, x]))

    kernels = detector.detect_graph(detector.descriptors.parse(_descriptor(branch)), RULES)
    assert [k.kind for k in kernels] == ["conv", "unary", "add"]


def test_kernel_configuration_and_counts():
    kernels = detector.detect_graph(detector.descriptors.parse(_descriptor(_residual_block)), RULES)
    conv, _, depthwise, pointwise, _, dense = kernels
    assert (conv.cin, conv.cout, conv.kernel_size, conv.strides) == (8, 8, 3, 1)
    assert conv.flops >= 2 * 16 * 16 * 8 * 9 * 8  # 2 per multiply-accumulate (+ the fused BN's)
    assert conv.bytes_read == (16 * 16 * 8 + 9 * 8 * 8 + 4 * 8) * 4  # input, kernel, BN's four vectors
    assert depthwise.output_shape == (8, 8, 8) and depthwise.strides == 2
    assert pointwise.input_shape == (8, 8, 8) and pointwise.output_shape == (8, 8, 12)
    assert dense.layers == ["head"] and dense.cin == 12 and dense.cout == 10


def test_unknown_target_and_bad_descriptor_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no fusion rules for target 'nowhere'"):
        detector.fusion_rules("nowhere")
    bad = tmp_path / "bad.json"
    bad.write_text('{"class_name": "Functional", "config": {"layers": [')
    with pytest.raises(DescriptorError, match="bad.json: malformed JSON"):
        detector.detect(bad)


def test_every_host_target_has_fusion_rules():
    for target in ("host-cpu-tf", "host-cpu-tflite", "host-cpu-onnxruntime"):
        rules = detector.fusion_rules(target)
        keys = {detector.SKIP_KEY, detector.FUNCTION_RATES_KEY, detector.OVERHEAD_GROUPS_KEY}
        assert {key.split(":")[0] for key in rules} - keys <= detector.UNARY
        rated = rules.get(detector.FUNCTION_RATES_KEY, ())
        assert {entry.split(":")[0] for entry in rated} <= set(predictor.FUNCTION_RATE_KINDS)
        assert {entry.split(":")[1] for entry in rated if ":" in entry} <= set(predictor.RATED_FUNCTIONS)
        assert all(set(kinds) <= set(detector.KINDS) for key, kinds in rules.items()
                   if key not in (detector.FUNCTION_RATES_KEY, detector.OVERHEAD_GROUPS_KEY))
        assert set(rules.get(detector.OVERHEAD_GROUPS_KEY, ())) <= set(detector.OPTIONAL_GROUPS)
        assert set(rules.get(detector.SKIP_KEY, detector.WINDOWED_KINDS)) <= set(detector.WINDOWED_KINDS)


def test_a_function_rates_entry_that_names_no_kind_or_rate_is_refused(tmp_path, monkeypatch):
    from perfpred import config

    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "t.yaml").write_text("fuse: {}\nfunction_rates: [\"unary:layernorm\"]\n")
    monkeypatch.setattr(config, "conf_dir", lambda: tmp_path)
    with pytest.raises(config.ConfigError, match="t.yaml.*unary:layernorm.*layer_norm"):
        detector.fusion_rules("t")


def test_an_overhead_group_the_rules_name_prices_the_pointwise_convolutions_apart(tmp_path, monkeypatch):
    from perfpred import config
    from perfpred.kernels import training

    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "t.yaml").write_text("fuse: {}\noverhead_groups: [pointwise]\n")
    (tmp_path / "kernels" / "u.yaml").write_text("fuse: {}\n")
    (tmp_path / "kernels" / "bad.yaml").write_text("fuse: {}\noverhead_groups: [spatial]\n")
    monkeypatch.setattr(config, "conf_dir", lambda: tmp_path)
    assert training.overhead_groups("t") == ("pointwise",) and training.overhead_groups("u") == ()
    with pytest.raises(config.ConfigError, match="bad.yaml.*spatial.*pointwise"):
        detector.fusion_rules("bad")
    kernels = [detector.Kernel("conv", ["a"], (8, 8, 4), (8, 8, 4), 4, 4, kernel_size=1, flops=1e5),
               detector.Kernel("conv", ["b"], (8, 8, 4), (8, 8, 4), 4, 4, kernel_size=3, flops=9e5)]
    regressors = {"conv": predictor.KernelRegressor(coefficients=np.r_[0.01, 1e-6, 0.0])}
    split, joined = (predictor.KernelModel("t", regressors, cache_mb=0.0, io_share=0.0, overhead_groups=groups)
                     for groups in (training.overhead_groups("t"), ()))
    pointwise, conv = predictor.GROUP_COLUMNS.index("kernel_pointwise_ms"), predictor.GROUP_COLUMNS.index("kernel_conv_ms")
    assert split.terms(kernels)[pointwise] > 0 and joined.terms(kernels)[pointwise] == 0
    assert split.terms(kernels)[[pointwise, conv]].sum() == pytest.approx(joined.terms(kernels)[conv])


def _pools() -> dict:
    conv = detector.Kernel("conv", ["c"], (28, 28, 32), (28, 28, 64), 32, 64, 3, 1)
    dense = detector.Kernel("dense", ["d"], (256,), (10,), 256, 10)
    return {kind: [] for kind in detector.KINDS} | {"conv": [conv], "dense": [dense]}


def test_plan_is_seeded_and_names_encode_the_configuration():
    profile = {"default_per_kind": 2, "per_kind": {"conv": 4}}
    first, again = sampler.plan(profile, _pools(), 3), sampler.plan(profile, _pools(), 3)
    assert first == again and len(first) == 4 + 2 * (len(detector.KINDS) - 1)
    assert sampler.plan(profile, _pools(), 4) != first
    for spec in first:
        assert measurement.spec_from_name(sampler.spec_name(spec)) == {k: v for k, v in spec.items()}
        if spec["kind"] == "grouped":
            assert spec["cin"] % spec["groups"] == 0 and spec["cout"] % spec["groups"] == 0
    assert all(sampler._spec_weights(spec) <= sampler.MAX_WEIGHTS for spec in first)
    huge = detector.Kernel("dense", ["fc1"], (245408,), (448,), 245408, 448)  # a VGG head at a large width
    for seed in range(5):
        spec = sampler.sample_spec("dense", {"dense": [huge]}, random.Random(seed))
        assert sampler._spec_weights(spec) <= sampler.MAX_WEIGHTS and spec["cin"] > 8_000  # halved, still wide
    grouped = sampler.plan({"per_kind": {"grouped": 40}}, _pools(), 0)
    # as the zoo's grouped convolutions (a channel per group, ConvNeXt) and as ResNeXt's (a few wide groups)
    assert {spec["groups"] == spec["cin"] == spec["cout"] for spec in grouped} == {True, False}


def test_grouped_draws_in_place_of_convolutions_leave_every_other_draw_as_it_was():
    """ResNeXt-like grouped kernels (a few channels per group, shaped like the zoo's plain convolutions) come from a
    stream of their own: adding them re-measures nothing already measured."""
    pools = _pools() | {"grouped": [detector.Kernel("grouped", ["g"], (14, 14, 96), (14, 14, 96), 96, 96, 7, 1, 96)]}
    profile = {"default_per_kind": 2, "per_kind": {"grouped": 6}}
    before = sampler.plan(profile, pools, 0)
    after = sampler.plan(profile | {"grouped_in_place_of_conv": 12}, pools, 0)
    assert after[:len(before)] == before and len(after) == len(before) + 12
    extra = after[len(before):]
    assert all(spec["kind"] == "grouped" and spec["in_place_of_conv"] for spec in extra)
    for spec in extra:
        assert spec["groups"] >= 2 and spec["cin"] >= 16 and spec["cin"] % spec["groups"] == 0
        assert spec["h"] > 7 and spec["k"] in (1, 3)  # the zoo convolution's spatial size (28, jittered), not ConvNeXt's
    assert min(spec["cin"] // spec["groups"] for spec in extra) <= 4  # ResNeXt's few channels per group
    assert all(spec["groups"] == spec["cin"] for spec in before if spec["kind"] == "grouped" and spec["k"] == 7)


def test_one_kinds_rows_and_worst_leave_the_other_kinds_adaptive_round_as_it_was():
    """Out-of-fold folds and adaptive draws are per kind: more grouped kernels (or other worst ones) must not re-pick
    or re-draw the unary kernels of the adaptive round."""
    unary = _roofline_table(12, 3).assign(kind="unary")
    unary["latency_ms"] *= np.random.default_rng(1).uniform(0.7, 1.3, len(unary))  # something for the forest to miss
    grouped = _roofline_table(20, 4).assign(kind="grouped", name=[f"g{i}" for i in range(20)])
    few = pd.concat([grouped.iloc[:8], unary], ignore_index=True)
    more = pd.concat([grouped, unary], ignore_index=True)
    at_unary = lambda table: predictor.cross_validated(table)[table["kind"].to_numpy() == "unary"].to_numpy()  # noqa: E731
    assert np.array_equal(at_unary(few), at_unary(more))
    near_unary = {"kind": "unary", "h": 20, "cin": 64, "cout": 64, "k": 1, "s": 1}
    near_grouped = {"kind": "grouped", "h": 14, "cin": 64, "cout": 64, "k": 3, "s": 1, "groups": 32}
    alone = sampler.adapt([near_unary], 3, _pools(), 0, set())
    after = sampler.adapt([near_grouped, near_unary], 3, _pools(), 0, set())
    assert [spec for spec in after if spec["kind"] == "unary"] == alone


@pytest.mark.parametrize("kind", detector.KINDS)
def test_a_sampled_descriptor_holds_its_kind(kind):
    spec = sampler.sample_spec(kind, _pools(), random.Random(1))
    descriptor = json.loads(sampler.build(spec).to_json())
    kernels = detector.detect_graph(detector.descriptors.parse(descriptor), detector.fusion_rules("host-cpu-tf"))
    assert kind in [k.kind for k in kernels]
    if kind in ("conv", "depthwise", "grouped", "transposed"):
        assert len(kernels) == 1 and len(kernels[0].layers) == 3  # BN and ReLU fused on this target


def _roofline_table(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    flops = rng.uniform(1e5, 1e8, rows)
    moved = rng.uniform(1e4, 1e7, rows)
    frame = pd.DataFrame({field: rng.integers(1, 64, rows) for field in detector.CONFIG_FIELDS})
    frame["flops"], frame["bytes_read"], frame["bytes_written"] = flops, moved / 2, moved / 2
    frame["latency_ms"] = 0.02 + flops / 1e6 * 0.01 + moved / 1e6 * 0.05
    return frame.assign(kind="conv", status="ok", name=[f"k{i}" for i in range(rows)])


def test_the_prior_recovers_a_roofline_and_predicts_held_out_kernels():
    table = _roofline_table(30, 0)
    fitted = predictor.KernelRegressor().fit(table, table["latency_ms"].to_numpy())
    assert fitted.coefficients == pytest.approx([0.02, 0.01, 0.05], rel=1e-3)
    unseen = _roofline_table(10, 1)
    error = np.abs(fitted.predict(unseen) / unseen["latency_ms"] - 1)
    assert error.max() < 0.02


def test_inside_a_model_a_kernel_sheds_the_call_and_what_feeding_and_fetching_its_tensors_cost():
    """A one-kernel model pays its call (the prior's constant) and moves its tensors in and out; per MB, what an
    element-wise (`unary`) kernel costs alone says how much. Inside a model neither is paid per kernel."""
    conv = _roofline_table(30, 0)
    unary = _roofline_table(30, 3).assign(kind="unary")
    unary["latency_ms"] = 0.02 + (unary["bytes_read"] + unary["bytes_written"]) / 1e6 * 0.03  # moving tensors only
    model = predictor.KernelModel("t", predictor.fit_kinds(pd.concat([conv, unary], ignore_index=True)))
    assert model.io_ms_per_mb == pytest.approx(0.03, rel=1e-3)
    kernel = detector.Kernel("conv", ["c"], (32, 32, 16), (32, 32, 16), 16, 16, flops=4_000_000, bytes_read=600_000,
                             bytes_written=400_000)
    alone = model.regressors["conv"].predict(pd.DataFrame([kernel.features()]))[0]
    inside = model.kernel_latencies([kernel])[0]
    assert inside == pytest.approx(alone - 0.02 - 0.03 * 1.0, rel=1e-2)  # 1 MB moved
    assert predictor.KernelModel("t", predictor.fit_kinds(conv)).io_ms_per_mb == 0.0  # no unary kernels: nothing


def test_the_share_of_the_io_a_kernel_sheds_is_a_candidate_beside_the_cache_size():
    """kernel-train chooses how much of a one-kernel model's I/O a kernel sheds inside a model (IO_SHARE_GRID) with
    the cache size, by leave-family-out; a model saved before the choice sheds all of it."""
    conv = _roofline_table(30, 0)
    unary = _roofline_table(30, 3).assign(kind="unary")
    unary["latency_ms"] = 0.02 + (unary["bytes_read"] + unary["bytes_written"]) / 1e6 * 0.03
    table = pd.concat([conv, unary], ignore_index=True)
    model = predictor.KernelModel.fit("t", table)
    kernel = detector.Kernel("conv", ["c"], (32, 32, 16), (32, 32, 16), 16, 16, flops=4_000_000, bytes_read=600_000,
                             bytes_written=400_000)
    alone = model.regressors["conv"].predict(pd.DataFrame([kernel.features()]))[0]
    assert model.io_share == predictor.IO_SHARE_GRID[0]
    for share in predictor.IO_SHARE_GRID:
        expected = alone - model.regressors["conv"].coefficients[0] - share * model.io_ms_per_mb * 1.0
        assert model.kernel_latencies([kernel], share)[0] == pytest.approx(expected, rel=1e-6)
    before = predictor.KernelModel("t", model.regressors, io_slope_ms_per_mb=model.io_slope_ms_per_mb, cache_mb=0.0)
    assert before.kernel_latencies([kernel])[0] == pytest.approx(model.kernel_latencies([kernel], 1.0)[0])
    candidates = model.terms_by_candidate([kernel, kernel])
    # no chains in the table: a cost per kernel is fitted ("count"), the only mode
    assert set(candidates) == {(c, s, "count") for c in predictor.CACHE_GRID_MB for s in predictor.IO_SHARE_GRID}
    groups = len(predictor.KIND_GROUPS)
    conv = predictor.GROUP_COLUMNS.index("kernel_conv_ms")  # a 1x1 convolution joins them: "t" names no group
    assert candidates[(0.0, 0.0, "count")][conv] == pytest.approx(2 * model.kernel_latencies([kernel], 0.0)[0])
    assert candidates[(0.0, 0.0, "count")][conv] > candidates[(0.0, 1.0, "count")][conv]  # shedding more leaves less
    # no weights: the cache moves nothing
    assert candidates[(0.0, 0.5, "count")][groups + 1] == candidates[(32.0, 0.5, "count")][groups + 1]


def test_the_io_slope_is_read_on_unary_kernels_that_fit_the_cache():
    """Tensors that stream from DRAM cost more per MB; a few large unary draws must not set what every kernel of a
    model sheds (a redrawn kernel zoo doubled the slope that way)."""
    unary = _roofline_table(40, 3).assign(kind="unary")
    moved_mb = (unary["bytes_read"] + unary["bytes_written"]) / 1e6
    unary["latency_ms"] = 0.02 + moved_mb * np.where(moved_mb <= predictor.IO_CACHE_MB, 0.03, 0.1)
    big = unary.iloc[:3].assign(bytes_read=30e6, bytes_written=30e6, latency_ms=0.02 + 60 * 0.1)
    table = pd.concat([unary, big], ignore_index=True)
    fitted = predictor.KernelModel.fit("t", table)
    assert fitted.io_ms_per_mb == pytest.approx(0.03, rel=1e-3)
    assert predictor.KernelModel("t", fitted.regressors).io_ms_per_mb > 0.05  # the unary prior's slope, as before
    assert predictor.fit_io_slope(big) == 0.0  # nothing fits the cache: nothing to read


@pytest.mark.parametrize("law", ["idle_lanes", "group_loops"])
def test_the_grouped_prior_prices_few_channels_per_group(law):
    """A grouped convolution of 2 channels per group runs near scalar speed (per FLOP ~4x one of 8 or more), or
    as a loop over its groups (a cost per group and output pixel, XLA's on TensorFlow): the grouped prior has a
    column for each, which one FLOP column cannot stand in for."""
    rng = np.random.default_rng(0)
    rows = 40
    per_group = rng.choice([1, 2, 4, 8, 16, 32], rows)
    groups = rng.choice([2, 4, 8, 32], rows)
    frame = pd.DataFrame({field: rng.integers(1, 64, rows) for field in detector.CONFIG_FIELDS})
    frame["cin"], frame["cout"], frame["groups"] = per_group * groups, per_group * groups, groups
    frame["output_elements"] = rng.integers(4, 60, rows) ** 2 * frame["cout"]
    frame["flops"], frame["bytes_read"], frame["bytes_written"] = rng.uniform(1e6, 1e8, rows), 1e5, 1e5
    idle = predictor.VECTOR_FLOATS / np.minimum(per_group, predictor.VECTOR_FLOATS)
    loops = groups * frame["output_elements"] / frame["cout"] / 1e6
    frame["latency_ms"] = 0.05 + (frame["flops"] / 1e6 * 0.002 * idle if law == "idle_lanes" else 0.065 * loops)
    table = frame.assign(kind="grouped", status="ok", name=[f"g{i}" for i in range(rows)])
    grouped = predictor.fit_kinds(table)["grouped"]
    column, slope = (-2, 0.002) if law == "idle_lanes" else (-1, 0.065)  # the last two columns (_design)
    assert grouped.group_columns and grouped.coefficients[column] == pytest.approx(slope, rel=1e-2)
    flat = predictor.KernelRegressor().fit(table, table["latency_ms"].to_numpy())
    flat_prior = np.abs(flat._prior(table) / table["latency_ms"] - 1).mean()
    assert np.abs(grouped._prior(table) / table["latency_ms"] - 1).mean() < 0.01 < flat_prior


def _fitted_on_kind(table: pd.DataFrame, kind: str, regressor: predictor.KernelRegressor) -> predictor.KernelRegressor:
    rows = table[table["kind"] == kind]
    return regressor.fit(rows, rows["latency_ms"].to_numpy())


def _relative_error(predicted: np.ndarray, frame: pd.DataFrame) -> float:
    return float(np.abs(predicted / frame["latency_ms"] - 1).mean())


def _blocked_table(rows: int, seed: int, kind: str, block: int) -> pd.DataFrame:
    """Kernels whose latency is a roofline of their FLOPs counted in whole blocks of `block` output channels."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({field: rng.integers(1, 64, rows) for field in detector.CONFIG_FIELDS})
    frame["cout"] = rng.integers(3, 200, rows)
    frame["flops"], frame["bytes_read"], frame["bytes_written"] = rng.uniform(1e6, 1e8, rows), 1e5, 1e5
    padded = np.ceil(frame["cout"] / block) * block / frame["cout"]
    frame["latency_ms"] = (0.02 + frame["flops"] * padded / 1e6 * 0.01) * rng.lognormal(0, 0.01, rows)
    return frame.assign(kind=kind, status="ok", name=[f"{kind}{i}" for i in range(rows)])


def test_a_kind_that_computes_whole_channel_blocks_gets_its_block_and_one_that_does_not_keeps_flops_as_counted():
    """A runtime's convolution computes output channels in blocks one vector wide (19 channels cost what 32 do);
    kernel-train chooses each kind's block by the kernel zoo's out-of-fold error, and keeps FLOPs as counted where
    no block does clearly better (CHANNEL_BLOCK_MARGIN)."""
    table = pd.concat([_blocked_table(60, 0, "conv", 16), _blocked_table(60, 1, "dense", 1)], ignore_index=True)
    model = predictor.KernelModel.fit("t", table)
    assert model.channel_blocks == {"conv": 16, "dense": 1}
    assert model.regressors["conv"].channel_block == 16 and model.regressors["dense"].channel_block == 1
    unseen = _blocked_table(20, 2, "conv", 16)
    counted = _fitted_on_kind(table, "conv", predictor.KernelRegressor())
    assert _relative_error(model.regressors["conv"].predict(unseen), unseen) < 0.03 < _relative_error(counted._prior(unseen), unseen)
    assert predictor.padded_share(np.array([19, 32, 141]), 16) == pytest.approx([32 / 19, 1.0, 144 / 141])
    del model.regressors["conv"].__dict__["channel_block"]  # a regressor pickled before the block counts FLOPs as is
    assert model.regressors["conv"].channel_block == 1


def _aligned_table(rows: int, seed: int, kind: str, alignment: int) -> pd.DataFrame:
    """Kernels that run 6x slower per FLOP when their channels are not a multiple of `alignment` (1: never)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({field: rng.integers(1, 64, rows) for field in detector.CONFIG_FIELDS})
    frame["cin"] = frame["cout"] = rng.choice([4, 12, 20, 36, 52, 100, 196, 5, 11, 30, 58, 73, 194, 309], rows)
    frame["groups"] = 1  # the prior's one FLOP column (not the window columns of one channel per group)
    frame["flops"], frame["bytes_read"], frame["bytes_written"] = rng.uniform(1e6, 1e8, rows), 1e5, 1e5
    slow = predictor.misaligned(frame, alignment)
    frame["latency_ms"] = (0.02 + frame["flops"] / 1e6 * np.where(slow, 0.06, 0.01)) * rng.lognormal(0, 0.01, rows)
    return frame.assign(kind=kind, status="ok", name=[f"{kind}{i}" for i in range(rows)])


def test_a_kind_with_a_slow_path_for_misaligned_channels_gets_a_rate_for_it_and_one_without_keeps_one_rate():
    """ONNX Runtime runs a depthwise convolution through its blocked kernels only when the channels are a multiple of
    4 (the kernel zoo's 11, 30 or 1401 channels run 5-10x slower per FLOP): kernel-train chooses each kind's
    alignment by the kernel zoo's out-of-fold error, the multiples of 4 that are not of 8 telling 4 from 8; a kind
    with one rate keeps 1 (CHANNEL_BLOCK_MARGIN)."""
    table = pd.concat([_aligned_table(80, 0, "depthwise", 4), _aligned_table(80, 1, "dense", 1)], ignore_index=True)
    model = predictor.KernelModel.fit("t", table)
    assert model.alignments == {"depthwise": 4, "dense": 1}
    assert model.regressors["depthwise"].alignment == 4 and model.regressors["dense"].alignment == 1
    unseen = _aligned_table(30, 2, "depthwise", 4)
    one_rate = _fitted_on_kind(table, "depthwise", predictor.KernelRegressor.for_kind("depthwise"))
    assert _relative_error(model.regressors["depthwise"]._prior(unseen), unseen) < 0.03 < _relative_error(one_rate._prior(unseen), unseen)
    assert predictor.misaligned(pd.DataFrame({"cin": [8, 12, 3], "cout": [16, 16, 16]}), 8).tolist() == [False, True, True]
    del model.regressors["depthwise"].__dict__["alignment"]  # a regressor pickled before it has one rate
    assert model.regressors["depthwise"].alignment == 1


def test_a_depthwise_prior_prices_each_window_at_its_own_rate():
    """A runtime has a depthwise kernel per window (TFLite's 7x7 ones run 5-10x slower per FLOP than its 3x3): the
    prior of the one-channel-per-group kinds has a FLOP rate per window size, which one FLOP column cannot stand in for;
    a window between the sizes takes the nearest one's."""
    rng = np.random.default_rng(0)
    rows = 60
    frame = pd.DataFrame({field: rng.integers(1, 64, rows) for field in detector.CONFIG_FIELDS})
    frame["cin"] = frame["cout"] = frame["groups"] = rng.integers(8, 200, rows)
    frame["kernel_size"] = rng.choice([3, 5, 7], rows)
    frame["flops"], frame["bytes_read"], frame["bytes_written"] = rng.uniform(1e5, 1e7, rows), 1e5, 1e5
    rate = frame["kernel_size"].map({3: 0.005, 5: 0.005, 7: 0.04})  # ms per MFLOP
    frame["latency_ms"] = 0.01 + frame["flops"] / 1e6 * rate
    table = frame.assign(kind="depthwise", status="ok", name=[f"d{i}" for i in range(rows)])
    fitted = predictor.fit_kinds(table)["depthwise"]
    assert fitted.window_rates and np.abs(fitted._prior(table) / table["latency_ms"] - 1).max() < 0.01
    one_rate = predictor.KernelRegressor().fit(table, table["latency_ms"].to_numpy())
    assert np.abs(one_rate._prior(table) / table["latency_ms"] - 1).mean() > 0.2
    nine = table.iloc[:1].assign(kernel_size=9)
    assert fitted._prior(nine)[0] == pytest.approx(fitted._prior(nine.assign(kernel_size=7))[0])
    assert predictor.KernelRegressor.for_kind("conv").window_rates is False


def test_worst_configurations_names_the_outlier():
    table = _roofline_table(20, 2)
    table.loc[5, "latency_ms"] *= 5
    assert predictor.worst_configurations(table, 1) == ["k5"]


def test_overhead_fit_recovers_its_coefficients():
    cases = ((1.0, 10, 3e5), (5.0, 40, 1e5), (20.0, 90, 2e6), (3.0, 30, 4e6), (9.0, 12, 5e5), (2.0, 2, 7e6))
    terms = np.array([predictor.model_terms([total], [detector.Kernel("conv", ["c"], (8, 8, 4), (8, 8, 4), 4, 4,
                                                                      bytes_read=int(read))] * count)
                      for total, count, read in cases])
    assert terms[2].tolist() == [20.0, 90.0, 90 * 2.0, 1.0]
    coefficients = np.array([1.1, 0.01, 0.02, 0.3])
    assert predictor.fit_overhead(terms, terms @ coefficients) == pytest.approx(coefficients)


def test_a_model_reads_the_weights_its_cache_cannot_keep_and_every_activation():
    """A dense head of 2 x 4.2 MB weights: the kernels know their weights apart from their activations; with a cache of
    C MB the model reads its input activations and the weights beyond C, and a one-kernel model's I/O is taken off
    the activations only (a dense kernel inside a model is not free because its weights once went through I/O)."""
    import keras
    from keras import layers

    descriptor = _descriptor(lambda: keras.Sequential([keras.Input((1024,)), layers.Dense(1024), layers.Dense(1024)]))
    kernels = detector.detect(descriptor, None)
    weights_mb = 2 * (1024 * 1024 + 1024) * 4 / 1e6
    activations_mb = 2 * 1024 * 4 / 1e6
    assert sum(k.weight_bytes for k in kernels) / 1e6 == pytest.approx(weights_mb)
    assert predictor.read_mb(kernels) == pytest.approx(weights_mb + activations_mb)  # models saved before: all of it
    assert predictor.read_mb(kernels, 0.0) == pytest.approx(weights_mb + activations_mb)
    assert predictor.read_mb(kernels, 4.0) == pytest.approx(weights_mb - 4.0 + activations_mb)
    assert predictor.read_mb(kernels, 64.0) == pytest.approx(activations_mb)
    dense = predictor.KernelRegressor(coefficients=np.array([0.1, 0.05, 0.0]))  # alone: 0.1 ms + 0.05 ms per MFLOP
    frame = pd.DataFrame([kernels[0].features()], columns=list(detector.CONFIG_FIELDS))
    alone = 0.1 + 0.05 * kernels[0].flops / 1e6
    fed = np.array([(kernels[0].bytes_read - kernels[0].weight_bytes + kernels[0].bytes_written) / 1e6])
    assert dense.predict_in_model(frame, 0.05, fed)[0] == pytest.approx(alone - 0.1 - 0.05 * fed[0])
    assert dense.predict_in_model(frame, 0.05)[0] == 0.0  # the old reckoning took the weights' I/O off: nothing left


def test_the_overhead_fit_chooses_the_cache_size_that_made_the_measurements():
    rng = np.random.default_rng(1)
    rows, groups = 60, len(predictor.KIND_GROUPS)
    sums = rng.uniform(0.1, 10, (rows, groups))
    activations_mb, weights_mb = rng.uniform(1, 30, rows), rng.uniform(0, 120, rows)
    counts = rng.integers(5, 200, rows)
    candidates = {cache: np.column_stack([sums, counts, activations_mb
                                          + np.maximum(weights_mb - cache, 0), np.ones(rows)])
                  for cache in predictor.CACHE_GRID_MB}
    truth = np.r_[np.ones(groups), 0.004, 0.05, 0.2]
    measured = candidates[16.0] @ truth
    cache, coefficients = predictor.fit_overhead_choosing(candidates, measured, np.arange(rows) % 5)
    assert cache == 16.0 and coefficients == pytest.approx(truth, rel=0.05, abs=0.002)


def test_kernels_are_summed_per_group_and_each_group_gets_its_own_factor():
    kinds = ["conv", "depthwise", "conv", "maxpool", "add", "other", "dense", "grouped", "transposed", "resize", "conv"]
    kernels = [detector.Kernel(kind, [kind], (8, 8, 4), (8, 8, 4), 4, 4, kernel_size=3) for kind in kinds]
    kernels[-1].kernel_size = 1  # a 1x1 convolution: pointwise, a group of its own
    sums = predictor.group_sums(kernels, np.arange(1.0, 12.0), groups=("pointwise",))
    assert dict(zip(predictor.KIND_GROUPS, sums, strict=True)) == {  # transposed with the convolutions, resize with
        "pointwise": 11, "conv": 1 + 3 + 9, "depthwise": 2, "dense": 7, "pool": 4, "elementwise": 5 + 10, "grouped": 8,
        "rest": 6}  # add
    joined = dict(zip(predictor.KIND_GROUPS, predictor.group_sums(kernels, np.arange(1.0, 12.0)), strict=True))
    assert joined["pointwise"] == 0 and joined["conv"] == 1 + 3 + 9 + 11  # a target whose rules do not name the group
    rng = np.random.default_rng(0)
    groups = len(predictor.KIND_GROUPS)
    terms = np.column_stack([rng.uniform(0.1, 10, (80, groups)), rng.integers(5, 200, 80), rng.uniform(1, 50, 80),
                             np.ones(80)])
    terms[:10, :groups] *= 0.01  # models of almost no kernel work, where the constant is what they cost
    truth = np.r_[1.0, 0.5, 2.6, 1.0, 1.0, 1.0, 1.0, 1.0, 0.004, 0.01, 0.2]  # in-model spatial conv 0.5x, depthwise 2.6x
    folds = np.arange(80) % 5
    fitted = predictor.fit_overhead_shrunk(terms, terms @ truth, folds)
    assert fitted == pytest.approx(truth, rel=0.05, abs=0.002)  # exact data: the weakest pull wins
    pooled = predictor.fit_overhead_shrunk(terms, terms @ truth, folds, grid=(1e9,))  # an infinite pull: one factor
    assert np.ptp(pooled[:groups]) < 1e-3


@pytest.mark.slow
@pytest.mark.tensorflow
def test_kernels_are_measured_by_the_model_harness_and_resume(tmp_path):
    import copy

    from perfpred import config

    params = copy.deepcopy(config.load_params())
    params["paths"]["kernels"] = str(tmp_path / "kernels")
    params["kernel_zoo"] = config.composed_params(["kernel_zoo=ci"])["kernel_zoo"]
    specs = [sampler.sample_spec(kind, _pools(), random.Random(0)) for kind in ("conv", "add")]
    paths = sampler.write(specs, tmp_path / "kernels" / "zoo" / "models")
    entries = [{"name": sampler.spec_name(s), "kind": s["kind"], "round": 1, "descriptor": str(p)}
               for s, p in zip(specs, paths, strict=True)]
    rows = measurement.measure_round(entries, "host-cpu-tf", params)
    assert [row["status"] for row in rows] == ["ok", "ok"] and all(row["latency_ms"] > 0 for row in rows)
    journal = tmp_path / "kernels" / "runs" / "host-cpu-tf" / "journal.jsonl"
    assert len(journal.read_text().splitlines()) == 2
    again = measurement.measure_round(entries, "host-cpu-tf", params)  # resumed: nothing measured twice
    assert [r["latency_ms"] for r in again] == [r["latency_ms"] for r in rows]
    assert len(journal.read_text().splitlines()) == 2
    table = measurement.table(entries, rows, detector.fusion_rules("host-cpu-tf"))
    assert table["kind"].tolist() == ["conv", "add"] and table.loc[0, "fused"] == 2
    # a kernel that failed (as grouped convolutions did on ONNX Runtime before their export was mended) is kept
    # failed on resume, and measured again with retry_failed: the new row wins
    written = [json.loads(line) for line in journal.read_text().splitlines()]  # in the order they finished
    journal.write_text("".join(json.dumps(row | {"status": "failed", "reason": "build: an earlier exporter's fault",
                                                 "latency_ms": None} if row["model"] == entries[1]["name"] else row) + "\n"
                               for row in written))
    assert [r["status"] for r in measurement.measure_round(entries, "host-cpu-tf", params)] == ["ok", "failed"]
    retried = measurement.measure_round(entries, "host-cpu-tf", params, retry_failed=True)
    assert [r["status"] for r in retried] == ["ok", "ok"] and retried[1]["latency_ms"] > 0
    assert retried[0]["latency_ms"] == rows[0]["latency_ms"] and len(journal.read_text().splitlines()) == 3


def test_only_relu_activations_fuse_under_the_plain_activation_rule():
    """Swish, gelu and sigmoid cost their own pass after a convolution (benchmarks/kernels_fusion.py): they fuse only
    where a rule names their function (`Activation:swish`), whether a layer of their own or a layer's argument."""
    import keras
    from keras import layers

    def net():
        image = keras.Input((8, 8, 4))
        x = layers.Activation("relu", name="relu")(layers.Conv2D(4, 3, padding="same", name="c1")(image))
        x = layers.Activation("silu", name="silu")(layers.Conv2D(4, 3, padding="same", name="c2")(x))
        x = layers.Conv2D(4, 3, padding="same", activation="gelu", name="c3")(x)
        return keras.Model(image, layers.Conv2D(4, 1, activation="relu6", name="c4")(x))

    graph = detector.descriptors.parse(_descriptor(net))
    kernels = detector.detect_graph(graph, {"Activation": ["conv"]})
    assert [(k.kind, k.classes) for k in kernels] == [
        ("conv", ["Conv2D", "Activation"]), ("conv", ["Conv2D"]), ("unary", ["Activation:swish"]),  # silu is swish
        ("conv", ["Conv2D"]), ("unary", ["Activation:gelu"]), ("conv", ["Conv2D"])]
    assert kernels[4].flops == 8 * 8 * 4 and kernels[4].bytes_read == kernels[4].bytes_written == 8 * 8 * 4 * 4
    named = detector.detect_graph(graph, {"Activation": ["conv"], "Activation:swish": ["conv"], "Activation:gelu": ["conv"]})
    assert [k.kind for k in named] == ["conv"] * 4
    assert detector.rule_key("Activation", {"activation": "_hard_swish"}) == "Activation:hard_swish"
    assert detector.rule_key("ReLU", {"max_value": 6.0}) == "ReLU"


def test_a_batch_norm_after_an_activation_fuses_only_where_a_rule_names_it():
    """Conv2D(activation="relu") then BatchNormalization (the synthetic networks' order): no runtime can fold that
    batch norm into the convolution's weights; ONNX Runtime runs it as a pass of its own, TFLite folds it into the
    next convolution (conf/kernels/). A batch norm before the activation fuses as before."""
    import keras
    from keras import layers

    def net():
        image = keras.Input((8, 8, 4))
        x = layers.BatchNormalization(name="bn1")(layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(image))
        x = layers.Activation("relu", name="r2")(layers.BatchNormalization(name="bn2")(layers.Conv2D(4, 1, name="c2")(x)))
        x = layers.BatchNormalization(name="bn3")(x)  # after c2's fused ReLU layer
        x = layers.BatchNormalization(name="bn4")(layers.Conv2D(4, 1, activation="linear", name="c3")(x))
        return keras.Model(image, x)

    graph = detector.descriptors.parse(_descriptor(net))
    apart = detector.detect_graph(graph, {"BatchNormalization": ["conv"], "Activation": ["conv"], "ReLU": ["conv"]})
    assert [(k.kind, k.layers) for k in apart] == [
        ("conv", ["c1"]), ("unary", ["bn1"]), ("conv", ["c2", "bn2", "r2"]), ("unary", ["bn3"]), ("conv", ["c3", "bn4"])]
    assert apart[1].classes == ["BatchNormalization"] and apart[1].flops > 0
    folded = detector.detect_graph(graph, {"BatchNormalization": ["conv"], "BatchNormalization:activated": ["conv"],
                                           "Activation": ["conv"], "ReLU": ["conv"]})
    assert [(k.kind, k.layers) for k in folded] == [("conv", ["c1", "bn1"]), ("conv", ["c2", "bn2", "r2", "bn3"]),
                                                    ("conv", ["c3", "bn4"])]
    assert detector.fusion_rules("host-cpu-tflite")["BatchNormalization:activated"] == ["conv", "depthwise", "grouped",
                                                                                  "transposed", "dense"]
    assert "BatchNormalization:activated" not in detector.fusion_rules("host-cpu-onnxruntime")


def test_a_dense_layer_on_a_feature_map_is_a_pointwise_convolution():
    """ConvNeXt's MLPs: Dense on (H, W, C) runs as the GEMM of a 1x1 convolution, not as a vector's GEMV."""
    import keras
    from keras import layers

    def net(dense: bool):
        image = keras.Input((6, 6, 16))
        x = layers.Dense(32, name="mlp")(image) if dense else layers.Conv2D(32, 1, name="mlp")(image)
        return keras.Model(image, layers.Dense(5, name="head")(layers.GlobalAveragePooling2D(name="gap")(x)))

    on_map, pointwise = (detector.detect_graph(detector.descriptors.parse(_descriptor(build)), {})
                         for build in (lambda: net(True), lambda: net(False)))
    assert [k.kind for k in on_map] == ["conv", "globalpool", "dense"]  # the head, on a vector, stays a dense kernel
    assert on_map[0].features() == pointwise[0].features()
    assert on_map[0].kernel_size == 1 and on_map[0].flops == 2 * 6 * 6 * 16 * 32 + 6 * 6 * 32


def test_a_group_the_training_models_barely_hold_cannot_take_any_factor():
    """Pooling is a sliver of the real models' time: a fit may give it any factor there, and the synthetic networks,
    predicted from them, pay for it. Each group's factor is at most MAX_GROUP_FACTOR times the common one."""
    rng = np.random.default_rng(0)
    rows = 40
    groups = len(predictor.KIND_GROUPS)
    conv, pool = list(predictor.KIND_GROUPS).index("conv"), list(predictor.KIND_GROUPS).index("pool")
    terms = np.zeros((rows, groups + 3))
    terms[:, conv] = rng.uniform(1.0, 10.0, rows)
    terms[:, pool] = rng.uniform(0.0, 0.01, rows)  # almost nothing
    terms[:, groups:] = np.column_stack([rng.integers(10, 100, rows), rng.uniform(1, 20, rows), np.ones(rows)])
    measured = terms[:, conv] * 1.0 + 0.002 * terms[:, groups] + 0.1
    measured[terms[:, pool] > 0.008] += 0.5  # a few models slower for another reason, which the pool term can soak up
    coefficients = predictor._shrunk(terms, measured, 0.0, common=1.0)
    assert coefficients[pool] == pytest.approx(predictor.MAX_GROUP_FACTOR)
    assert np.all(coefficients >= 0) and coefficients[conv] == pytest.approx(1.0, rel=0.1)


def test_a_window_that_strides_past_its_size_reads_only_its_windows():
    """ResNet's 1x1 shortcut of stride 2 reads a quarter of its input; a max pool of size 2 and stride 4 a quarter too,
    one of size 3 and stride 2 all of it."""
    import keras
    from keras import layers

    def net():
        image = keras.Input((16, 16, 8))
        x = layers.Conv2D(12, 1, strides=2, use_bias=False, name="shortcut")(image)
        x = layers.MaxPooling2D(2, strides=4, name="sparse_pool")(x)
        x = layers.Conv2D(12, 3, strides=1, padding="same", use_bias=False, name="dense_conv")(x)
        x = layers.MaxPooling2D(2, strides=(1, 2), name="half_pool")(x)
        return keras.Model(image, layers.MaxPooling2D(3, strides=2, padding="same", name="overlapping")(x))

    shortcut, sparse, conv, half, overlapping = detector.detect_graph(detector.descriptors.parse(_descriptor(net)), {})
    floats = detector.BYTES_PER_ELEMENT
    assert shortcut.bytes_read == (16 * 16 * 8 // 4 + 8 * 12) * floats
    assert sparse.bytes_read == 8 * 8 * 12 // 4 * floats
    assert conv.bytes_read == (2 * 2 * 12 + 3 * 3 * 12 * 12) * floats  # stride 1: every input element
    assert half.bytes_read == 2 * 2 * 12 * floats  # stride 1 down, 2 across: every column a window reads
    assert overlapping.bytes_read == 1 * 1 * 12 * floats
    # a target whose pools read all of their input (TFLite: conf/kernels/host-cpu-tflite.yaml)
    pools_read_all = {detector.SKIP_KEY: ["conv", "grouped", "depthwise"]}
    shortcut, sparse, *_ = detector.detect_graph(detector.descriptors.parse(_descriptor(net)), pools_read_all)
    assert shortcut.bytes_read == (16 * 16 * 8 // 4 + 8 * 12) * floats and sparse.bytes_read == 8 * 8 * 12 * floats
    assert detector.fusion_rules("host-cpu-tflite")[detector.SKIP_KEY] == ["conv", "grouped", "depthwise"]
    assert detector.SKIP_KEY not in detector.fusion_rules("host-cpu-tf")  # every windowed kind skips there


def test_strided_draws_keep_the_zoos_stride_and_leave_every_other_draw_as_it_was():
    """Convolutions and poolings whose stride exceeds their size come from a stream of their own, shaped like the zoo's."""
    pools = _pools() | {"maxpool": [detector.Kernel("maxpool", ["p"], (80, 80, 64), (20, 20, 64), 64, 64, 2, 4),
                                    detector.Kernel("maxpool", ["q"], (40, 40, 64), (20, 20, 64), 64, 64, 2, 2)],
                        "conv": _pools()["conv"] + [detector.Kernel("conv", ["s"], (56, 56, 64), (28, 28, 128), 64, 128,
                                                                    1, 2)]}
    profile = {"default_per_kind": 2}
    before = sampler.plan(profile, pools, 0)
    after = sampler.plan(profile | {"strided_beyond_kernel": 10}, pools, 0)
    assert after[:len(before)] == before and len(after) == len(before) + 10
    extra = after[len(before):]
    assert {spec["kind"] for spec in extra} == {"conv", "maxpool"}  # no strided avgpool in these pools
    assert all(spec["s"] > spec["k"] for spec in extra)
    assert {(spec["k"], spec["s"]) for spec in extra} == {(1, 2), (2, 4)}
    assert all(spec["cout"] == spec["cin"] for spec in extra if spec["kind"] == "maxpool")


def test_decoder_draws_upsample_to_the_zoos_convolutions_and_leave_every_other_draw_as_it_was():
    """Transposed convolutions as decoders have them come from a stream of their own: stride 2, upsampling to about
    the spatial size of one of the zoo's plain convolutions, whose output channels they give."""
    pools = _pools()
    profile = {"default_per_kind": 2}
    before = sampler.plan(profile, pools, 0)
    after = sampler.plan(profile | {"transposed_as_decoders": 6}, pools, 0)
    assert after[:len(before)] == before and len(after) == len(before) + 6
    extra = after[len(before):]
    assert {spec["kind"] for spec in extra} == {"transposed"} and all(spec["s"] == 2 for spec in extra)
    assert all(spec["k"] in (2, 3, 4) and spec["cin"] in (spec["cout"], 2 * spec["cout"]) for spec in extra)
    largest = max(k.input_shape[0] for k in pools["conv"])
    assert all(2 <= spec["h"] <= largest for spec in extra)
    assert all(sampler._spec_flops(spec) <= sampler.MAX_FLOPS for spec in extra)


def test_depthwise_window_draws_cover_every_window_the_zoo_has_and_leave_every_other_draw_as_it_was():
    """Depthwise convolutions drawn with a window chosen uniformly among the zoo's depthwise sizes, so a size few zoo
    kernels have (NASNet's 7x7) is measured too, from a stream of their own."""
    depthwise = [detector.Kernel("depthwise", [f"d{i}"], (56, 56, 32), (56, 56, 32), 32, 32, 3, 1) for i in range(20)]
    depthwise.append(detector.Kernel("depthwise", ["d7"], (42, 42, 11), (21, 21, 11), 11, 11, 7, 2))
    pools = _pools() | {"depthwise": depthwise}
    profile = {"default_per_kind": 2}
    before = sampler.plan(profile, pools, 0)
    after = sampler.plan(profile | {"depthwise_by_window": 12}, pools, 0)
    assert after[:len(before)] == before and len(after) == len(before) + 12
    extra = after[len(before):]
    assert {spec["kind"] for spec in extra} == {"depthwise"} and {spec["k"] for spec in extra} == {3, 7}
    assert all(spec["cin"] == spec["cout"] and spec["s"] == (2 if spec["k"] == 7 else 1) for spec in extra)


def test_the_overheads_constant_can_be_pinned_at_the_call_cost():
    """The zoo's real networks leave the per-model constant ill-determined; pinned at what calling a one-kernel model
    costs, the fit gives the rest to the other terms."""
    rng = np.random.default_rng(1)
    groups = len(predictor.KIND_GROUPS)
    terms = np.column_stack([rng.uniform(1, 50, (30, groups)), rng.integers(50, 400, 30), rng.uniform(5, 80, 30),
                             np.ones(30)])
    truth = np.r_[np.ones(groups), 0.003, 0.02, 0.1]
    folds = np.arange(30) % 5
    pinned = predictor.fit_overhead_shrunk(terms, terms @ truth, folds, constant_ms=0.1)
    assert pinned[-1] == pytest.approx(0.1) and pinned == pytest.approx(truth, rel=0.02, abs=1e-3)
    wrong = predictor.fit_overhead_shrunk(terms, terms @ truth, folds, constant_ms=2.0)
    assert wrong[-1] == pytest.approx(2.0)
    assert predictor.fit_overhead(terms, terms @ truth, constant_ms=0.1) == pytest.approx(truth, rel=1e-3, abs=1e-5)
    model = predictor.KernelModel("t", {kind: predictor.KernelRegressor(coefficients=np.r_[c, 1.0, 0.1])
                                        for kind, c in (("conv", 0.09), ("unary", 0.10), ("add", 0.13))})
    assert model.call_ms == pytest.approx(0.10)


def test_chains_hold_their_kinds_kernels_in_a_row_and_are_named_for_them(tmp_path):
    """A chain is `n` tiny kernels of one kind, each keeping its input's shape; its table row says which kind and how
    many kernels the target's rules see in it (a convolution with its batch norm and ReLU is one on TF)."""
    specs = sampler.plan({"chains": {"kinds": ["conv", "add"], "lengths": [1, 3]}}, _pools(), seed=0)
    assert [sampler.spec_name(s) for s in specs] == ["chain_conv_n1", "chain_conv_n3", "chain_add_n1", "chain_add_n3"]
    assert measurement.spec_from_name("chain_conv_n3") == {"kind": "chain", "of": "conv", "n": 3}
    assert sampler.plan({}, _pools(), seed=0) == []  # no chains unless the profile asks
    paths = sampler.write(specs, tmp_path)
    rules = detector.fusion_rules("host-cpu-tf")
    rows = [measurement.kernel_row(sampler.spec_name(s), "chain", p, rules) for s, p in zip(specs, paths, strict=True)]
    assert [(r["chain_of"], r["kernels_in_descriptor"]) for r in rows] == [("conv", 1), ("conv", 3), ("add", 1), ("add", 3)]
    with pytest.raises(ValueError, match="chains are built of"):
        sampler.build_chain({"kind": "chain", "of": "resize", "n": 2})


def _chain_rows(per_kernel_ms: dict[str, float], call_ms: float = 0.1) -> pd.DataFrame:
    rows = [{"name": f"chain_{kind}_n{n}", "kind": "chain", "chain_of": kind, "kernels_in_descriptor": n, "status": "ok",
             "latency_ms": call_ms + n * cost} for kind, cost in per_kernel_ms.items() for n in (1, 17)]
    return pd.DataFrame(rows)


def test_a_kinds_in_model_cost_is_read_off_its_chains_and_teaches_no_kinds_regressor():
    chains = pd.concat([_chain_rows({"conv": 0.0136, "add": 0.0}),
                        pd.DataFrame([{"name": "chain_dense_n1", "kind": "chain", "chain_of": "dense",
                                       "kernels_in_descriptor": 1, "status": "ok", "latency_ms": 0.1}])])
    dispatch = predictor.dispatch_per_kernel(chains)
    assert dispatch == pytest.approx({"conv": 0.0136, "add": 0.0})  # one length of dense: no slope
    noisy = _chain_rows({"add": 0.0}).assign(latency_ms=[0.1, 0.099])
    assert predictor.dispatch_per_kernel(noisy) == {"add": 0.0}  # a chain a hair faster: not a negative cost
    assert predictor.dispatch_per_kernel(_roofline_table(10, 0)) == {}
    table = pd.concat([_roofline_table(30, 0), chains], ignore_index=True)
    model = predictor.KernelModel.fit("t", table)
    assert set(model.regressors) == {"conv"} and model.dispatch_ms == pytest.approx(dispatch)
    assert predictor.cross_validated(table).dropna().index.equals(pd.RangeIndex(30))


def test_the_overhead_prices_kernels_by_their_chains_where_that_made_the_measurements():
    """Whole models whose kernels cost, beyond their work, what their kind's chains say (13.6 us a convolution, nothing
    an add, as TF runs them) are fitted better by pinning those costs than by one cost per kernel: the overhead
    fit chooses "dispatch" among the candidates, and a model so priced pays the call plus its kernels' costs."""
    rng = np.random.default_rng(3)
    regressors = {kind: predictor.KernelRegressor(coefficients=np.r_[0.1, 0.01, 0.0]) for kind in ("conv", "add")}
    model = predictor.KernelModel("t", regressors, dispatch_ms={"conv": 0.0136, "add": 0.0}, cache_mb=0.0, io_share=0.0)
    assert model.count_modes() == ("count", "dispatch")
    def kernel(kind: str) -> detector.Kernel:
        return detector.Kernel(kind, ["x"], (8, 8, 8), (8, 8, 8), 8, 8, flops=float(rng.uniform(1e5, 1e7)))

    models = []
    for _ in range(40):
        convs, adds = int(rng.integers(1, 40)), int(rng.integers(0, 40))
        models.append([kernel("conv") for _ in range(convs)] + [kernel("add") for _ in range(adds)])
    candidates = {}
    for kernels in models:
        for key, terms in model.terms_by_candidate(kernels, caches_mb=(0.0,), io_shares=(0.0,)).items():
            candidates.setdefault(key, []).append(terms)
    candidates = {key: np.array(rows) for key, rows in candidates.items()}
    measured = np.array([model.call_ms + sum(model.kernel_latencies(k)) + model.dispatch_sum_ms(k) for k in models])
    key, coefficients = predictor.fit_overhead_choosing(candidates, measured, np.arange(40) % 5, constant_ms=model.call_ms)
    assert key == (0.0, 0.0, "dispatch")
    model.overhead, model.count_mode = coefficients, "dispatch"
    assert model.model_latency(models[0]) == pytest.approx(measured[0], rel=0.01)
    assert model.term_features(models[0])["kernel_count"] == len(models[0])  # a count, whatever the mode
    before = predictor.KernelModel("t", regressors, cache_mb=0.0, io_share=0.0)  # no chains: one mode, as before
    assert before.count_modes() == ("count",) and before.dispatch_sum_ms(models[0]) == 0.0


def test_pairs_without_a_batch_norm_copy_drawn_convolutions_and_leave_every_other_draw_as_it_was(tmp_path):
    profile = {"default_per_kind": 1, "per_kind": {"conv": 6, "depthwise": 3}}
    before = sampler.plan(profile, _pools(), 0)
    after = sampler.plan(profile | {"without_batch_norm": 2}, _pools(), 0)
    bare = [spec for spec in after if spec.get("bn") is False]
    assert after[:len(before)] == before and len(bare) == 2 and len(after) == len(before) + 2
    for spec in bare:
        assert {k: v for k, v in spec.items() if k != "bn"} in before and spec["kind"] in ("conv", "depthwise")
        assert sampler.spec_name(spec).endswith("_nobn") and measurement.spec_from_name(sampler.spec_name(spec)) == spec
        assert sampler.output_elements(spec) >= sampler.PAIR_MIN_OUTPUT
    with_bn, without = (sampler.write([spec], tmp_path)[0] for spec in ({k: v for k, v in bare[0].items() if k != "bn"}, bare[0]))
    rules = detector.fusion_rules("host-cpu-tf")
    rows = [measurement.kernel_row(path.stem, bare[0]["kind"], path, rules) for path in (with_bn, without)]
    assert [row["affine"] for row in rows] == [1, 0] and rows[0]["fused"] == rows[1]["fused"] + 1


def test_a_batch_norm_is_priced_from_the_pairs_and_taken_off_the_kernels_that_have_none():
    """Pairs of a convolution measured with and without its batch norm, the norm costing 0.08 ms per MB written: the
    rate is read off them, they teach no kind's regressor, and a model's convolution without a batch norm costs that
    much less than the same convolution with one (nothing changes where the rate is 0)."""
    table = _roofline_table(30, 0)
    pairs = table.head(6).assign(name=lambda t: t["name"] + "_nobn",
                                 latency_ms=lambda t: t["latency_ms"] - 0.08 * t["bytes_written"] / 1e6)
    noisy = pairs.head(1).assign(latency_ms=lambda t: t["latency_ms"] * 3)  # one outlier pair: the median holds
    paired = pd.concat([table, pairs.iloc[1:], noisy], ignore_index=True)
    assert predictor.fit_batch_norm_rate(paired) == pytest.approx(0.08)
    assert predictor.fit_batch_norm_rate(table) == 0.0
    assert predictor.cross_validated(paired).dropna().index.equals(pd.RangeIndex(30))
    assert predictor.KernelModel.fit("t", paired).batch_norm_ms_per_mb == pytest.approx(0.08)
    regressors = {"conv": predictor.KernelRegressor(coefficients=np.r_[0.1, 0.01, 0.0])}
    model = predictor.KernelModel("t", regressors, cache_mb=0.0, io_share=0.0, batch_norm_ms_per_mb=0.08)

    def conv(layers, classes):
        return detector.Kernel("conv", layers, (32, 32, 16), (32, 32, 64), 16, 64, 3, flops=2 * 32 * 32 * 64 * 144,
                               bytes_read=32 * 32 * 16 * 4, bytes_written=32 * 32 * 64 * 4, classes=classes)

    normalised = conv(["c", "bn", "relu"], ["Conv2D", "BatchNormalization", "ReLU"])
    after_relu = conv(["c", "bn"], ["Conv2D", "BatchNormalization:activated"])
    bare = conv(["c", "relu"], ["Conv2D", "ReLU"])
    assert [k.affine for k in (normalised, after_relu, bare)] == [1, 1, 0]
    inside = model.kernel_latencies([normalised, after_relu, bare])
    assert inside[0] == pytest.approx(inside[1])
    assert inside[0] - inside[2] == pytest.approx(0.08 * bare.bytes_written / 1e6)
    model.batch_norm_ms_per_mb = 0.0
    assert model.kernel_latencies([bare])[0] == pytest.approx(inside[0])


def test_activation_draws_name_their_function_and_leave_every_other_draw_as_it_was(tmp_path):
    pools = _pools() | {"unary": [detector.Kernel("unary", ["a"], (28, 28, 64), (28, 28, 64), 64, 64)]}
    profile = {"default_per_kind": 1, "per_kind": {"conv": 3}}
    before = sampler.plan(profile, pools, 0)
    after = sampler.plan(profile | {"unary_by_function": 6}, pools, 0)
    drawn = [spec for spec in after if spec.get("fn")]
    assert [spec for spec in after if not spec.get("fn")] == before and len(drawn) == 6
    assert {spec["fn"] for spec in drawn} <= set(sampler.DRAWN_FUNCTIONS)
    for spec in drawn:
        assert measurement.spec_from_name(sampler.spec_name(spec)) == spec
    hard = next((spec for spec in drawn if spec["fn"] == "hard_swish"), drawn[0] | {"fn": "hard_swish"})
    path = sampler.write([hard], tmp_path)[0]
    row = measurement.kernel_row(path.stem, "unary", path, detector.fusion_rules("host-cpu-tflite"))
    assert row["function"] == "hard_swish" and row["kernels_in_descriptor"] == 1


def test_an_activation_function_with_draws_of_its_own_gets_its_own_rate_and_one_without_keeps_the_common_rate():
    """Unary kernels cost 0.02 ms per MB (batch norms, ReLUs) but gelu 0.2: the unary prior learns a rate for gelu
    from its draws, and a function with fewer than MIN_FUNCTION_ROWS draws (swish, one) keeps the common rate."""
    rng = np.random.default_rng(0)
    moved = rng.uniform(1e5, 1e7, 24)
    functions = np.array([""] * 14 + ["gelu"] * 9 + ["swish"])
    frame = pd.DataFrame({field: rng.integers(1, 64, 24) for field in detector.CONFIG_FIELDS})
    frame["flops"], frame["bytes_read"], frame["bytes_written"] = moved / 8, moved / 2, moved / 2
    frame["function"] = functions
    latency = 0.05 + moved / 1e6 * np.where(functions == "gelu", 0.2, 0.02)
    regressor = predictor.KernelRegressor.for_kind("unary").fit(frame, latency)
    assert regressor.function_rates == ("gelu",)
    assert regressor._prior(frame) == pytest.approx(latency, rel=0.02)
    unary = detector.Kernel("unary", ["g"], (40, 40, 96), (40, 40, 96), 96, 96, bytes_read=614400, bytes_written=614400,
                            classes=["Activation:gelu"])
    relu = detector.Kernel("unary", ["r"], (40, 40, 96), (40, 40, 96), 96, 96, bytes_read=614400, bytes_written=614400,
                           classes=["Activation"])
    assert (unary.function, relu.function) == ("gelu", "")
    model = predictor.KernelModel("t", {"unary": regressor}, cache_mb=0.0, io_share=0.0)
    gelu_ms, relu_ms = model.kernel_latencies([unary, relu])
    assert gelu_ms / relu_ms == pytest.approx(10.0, rel=0.2)


def test_a_target_without_function_rates_learns_from_the_table_as_before_the_function_draws():
    table = pd.DataFrame({"name": ["unary_a", "unary_b_agelu", "chain_unary_n1", "conv_c"],
                          "kind": ["unary", "unary", "chain", "conv"], "function": ["", "gelu", "sigmoid", ""]})
    rated = predictor.rated_for(table, ["unary"])
    assert rated.equals(table)
    plain = predictor.rated_for(table, ())
    assert plain["name"].tolist() == ["unary_a", "chain_unary_n1", "conv_c"]
    assert plain["function"].tolist() == ["", "sigmoid", ""]  # a chain's first kernel: only its latency is read
    rules = {t: detector.fusion_rules(t).get(detector.FUNCTION_RATES_KEY) for t in ("host-cpu-tf", "host-cpu-onnxruntime")}
    assert rules == {"host-cpu-tf": ["unary"], "host-cpu-onnxruntime": ["unary:layer_norm"]}


def test_a_kind_function_entry_rates_that_function_alone():
    """ONNX Runtime prices its layer norms at their own rate and every activation function at the common one."""
    table = pd.DataFrame({"name": ["unary_a", "unary_b_agelu", "unary_c_alayer-norm", "chain_unary_n1", "conv_c"],
                          "kind": ["unary", "unary", "unary", "chain", "conv"],
                          "function": ["", "gelu", "layer_norm", "sigmoid", ""]})
    rated = predictor.rated_for(table, ["unary:layer_norm"])
    assert rated["name"].tolist() == ["unary_a", "unary_c_alayer-norm", "chain_unary_n1", "conv_c"]
    assert rated["function"].tolist() == ["", "layer_norm", "sigmoid", ""]
    assert predictor.rated_for(table, ["unary"]).equals(table)


def test_layer_norm_draws_are_unary_kernels_at_a_rate_of_their_own_and_leave_every_other_draw_as_it_was(tmp_path):
    """A LayerNormalization is a unary kernel named `layer_norm` (it was an `other` one, priced as a zero padding); the
    zoo's layer norms stay in the `other` pool, so the draws of every kind are those made before."""
    import keras

    inputs = keras.Input((12, 12, 40))
    normalised = keras.layers.LayerNormalization(epsilon=1e-6)(keras.layers.DepthwiseConv2D(7, padding="same")(inputs))
    network = tmp_path / "convnext_block.json"
    network.write_text(keras.Model(inputs, keras.layers.Dense(160)(normalised)).to_json())
    kernels = detector.detect(network, "host-cpu-onnxruntime")
    norm = next(k for k in kernels if k.classes[0] == "LayerNormalization")
    assert (norm.kind, norm.function, norm.cout) == ("unary", "layer_norm", 40)
    pools = sampler.zoo_pools([network])
    assert [k.classes[0] for k in pools["other"]] == ["LayerNormalization"] and not pools["unary"]
    pools |= {"conv": _pools()["conv"]}
    profile = {"default_per_kind": 1, "per_kind": {"conv": 3}}
    before = sampler.plan(profile, pools, 0)
    after = sampler.plan(profile | {"unary_layer_norm": 3}, pools, 0)
    drawn = [spec for spec in after if spec.get("fn")]
    assert [spec for spec in after if not spec.get("fn")] == before and len(drawn) == 3
    assert all(spec["fn"] == sampler.LAYER_NORM and spec["h"] <= 17 for spec in drawn)  # near the zoo's 12 x 12
    assert all(measurement.spec_from_name(sampler.spec_name(spec)) == spec for spec in drawn)
    path = sampler.write(drawn[:1], tmp_path / "zoo")[0]
    row = measurement.kernel_row(path.stem, "unary", path, detector.fusion_rules("host-cpu-onnxruntime"))
    assert row["function"] == "layer_norm" and row["kernels_in_descriptor"] == 1


def test_the_adaptive_round_draws_an_activations_neighbours_with_its_function():
    pools = _pools() | {"unary": [detector.Kernel("unary", ["a"], (28, 28, 64), (28, 28, 64), 64, 64)]}
    worst = {"kind": "unary", "h": 28, "cin": 64, "cout": 64, "k": 1, "s": 1, "fn": "gelu"}
    drawn = sampler.adapt([worst], 3, pools, 0, set())
    assert len(drawn) == 3 and all(spec["fn"] == "gelu" for spec in drawn)
    assert all(measurement.spec_from_name(sampler.spec_name(spec)) == spec for spec in drawn)

