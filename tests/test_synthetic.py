"""The basic_model generator: unique, reproducible, feasible combinations within the configured ranges."""

from __future__ import annotations

import itertools
import math

import pytest

from perfpred.zoo import synthetic
from perfpred.zoo.synthetic import BasicModel

SPEC = {
    "count": 40,
    "conv_layers": [2, 12],
    "kernel_sizes": [1, 2, 3, 5],
    "filters": [8, 16, 32],
    "strides": [1, 2, 3],
    "input_widths": [8, 16, 32, 64],
    "max_gmacs": 0.2,
}


def simulated_widths(model: BasicModel, plan: list[synthetic.Layer]) -> list[tuple[str, int, int]]:
    """(layer class, input width, output width) of each spatial layer, computed independently of the generator."""
    width, rows = model.input_width, []
    for layer in plan:
        arguments = dict(layer.arguments)
        if layer.class_name == "Conv2D":
            out = -(-width // arguments["strides"])  # ceil: "same" padding
        elif layer.class_name == "MaxPooling2D":
            out = math.floor((width - arguments["pool_size"]) / arguments["strides"]) + 1
        else:
            continue
        rows.append((layer.class_name, width, out))
        width = out
    return rows


def test_sample_is_unique_and_within_ranges():
    models = synthetic.sample(SPEC, seed=1)
    assert len(models) == SPEC["count"]
    assert len({m.name for m in models}) == len(models)
    for m in models:
        assert SPEC["conv_layers"][0] <= m.conv_layers <= SPEC["conv_layers"][1]
        assert m.kernel_size in SPEC["kernel_sizes"]
        assert m.filters in SPEC["filters"]
        assert m.strides in SPEC["strides"]
        assert m.input_width in SPEC["input_widths"]
        assert synthetic.conv_macs(m) <= SPEC["max_gmacs"] * 1e9
        assert m.name == f"basic_model_c{m.conv_layers}_k{m.kernel_size}_f{m.filters}_s{m.strides}_{m.input_width}"


def test_sample_is_reproducible_from_its_seed():
    assert synthetic.sample(SPEC, seed=7) == synthetic.sample(SPEC, seed=7)
    assert synthetic.sample(SPEC, seed=7) != synthetic.sample(SPEC, seed=8)
    model = synthetic.sample(SPEC, seed=7)[0]
    assert synthetic.layer_plan(model, 7) == synthetic.layer_plan(model, 7)


def test_impossible_combinations_are_never_emitted():
    emitted = set(synthetic.candidates({**SPEC, "max_gmacs": math.inf}))
    grid = itertools.product(range(2, 13), [1, 2, 3, 5], [8, 16, 32], [1, 2, 3], [8, 16, 32, 64])
    impossible = 0
    for combination in grid:
        model = BasicModel(*combination)
        widths = [model.input_width]
        for _ in range(model.conv_layers - 1):
            widths.append(-(-widths[-1] // model.strides))
        possible = min(widths) >= model.kernel_size  # every convolution sees at least its kernel
        assert (model in emitted) == possible, model.name
        impossible += not possible
    assert impossible > 100  # the grid does hold impossible combinations
    assert BasicModel(6, 3, 8, 2, 16) not in emitted  # 16 -> 8 -> 4 -> 2 -> 1: the 5th conv sees 1 pixel
    with pytest.raises(ValueError, match="smaller than its 3x3 kernel"):
        synthetic.layer_plan(BasicModel(6, 3, 8, 2, 16), seed=0)


def test_pooling_never_collapses_the_map():
    for model in synthetic.candidates({**SPEC, "max_gmacs": math.inf}):
        for class_name, width_in, width_out in simulated_widths(model, synthetic.layer_plan(model, seed=3)):
            assert width_out >= 1, model.name
            if class_name == "Conv2D":
                assert width_in >= model.kernel_size, model.name


def test_layer_plan_follows_the_seed_structure():
    models = synthetic.sample(SPEC, seed=2)
    after = {"BatchNormalization": 0, "MaxPooling2D": 0}
    for model in models:
        plan = synthetic.layer_plan(model, seed=2)
        classes = [layer.class_name for layer in plan]
        assert classes.count("Conv2D") == model.conv_layers
        assert classes[-3] in synthetic.HEADS and classes[-2:] == ["Dense", "Activation"]
        assert dict(plan[-2].arguments)["units"] in synthetic.CLASSES
        body = classes[:-3]
        for previous, layer in itertools.pairwise(body):
            if layer != "Conv2D":
                assert previous == "Conv2D"  # BN or pooling follow a convolution, never each other
                after[layer] += 1
        assert body[0] == "Conv2D"
    assert after["BatchNormalization"] > after["MaxPooling2D"] > 0


def test_too_few_combinations_yields_all_of_them():
    spec = {**SPEC, "count": 10_000}
    assert synthetic.sample(spec, seed=0) == synthetic.candidates(spec)


def test_bad_ranges_are_reported():
    with pytest.raises(ValueError, match="conv_layers"):
        synthetic.candidates({**SPEC, "conv_layers": [5, 2]})
    with pytest.raises(ValueError, match="non-empty list"):
        synthetic.candidates({**SPEC, "filters": []})


@pytest.mark.tensorflow
def test_keras_model_matches_the_plan():
    import keras

    for model in synthetic.sample({**SPEC, "count": 3}, seed=4):
        plan = synthetic.layer_plan(model, seed=4)
        built = synthetic.build(model, seed=4)
        widths = simulated_widths(model, plan)
        spatial = [layer for layer in built.layers if layer.__class__.__name__ in ("Conv2D", "MaxPooling2D")]
        assert [(layer.__class__.__name__, layer.output.shape[1]) for layer in spatial] == [(c, w) for c, _, w in widths]
        assert built.output.shape == (None, dict(plan[-2].arguments)["units"])
        assert keras.models.model_from_json(built.to_json()).count_params() == built.count_params()
