"""The zoo stage: profiles compose, the manifest contract holds, descriptors load and run in Keras."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perfpred import cli, config
from perfpred.data import schema
from perfpred.zoo import build as zoo

REPO = Path(__file__).resolve().parents[1]
CONTRACT_FAMILIES = {
    "ResNet", "ResNetV2", "DenseNet", "MobileNetV1", "MobileNetV2", "MobileNetV3", "EfficientNet", "EfficientNetV2",
    "InceptionV3", "InceptionResNetV2", "Xception", "NASNet", "ConvNeXt", "RegNet", "VGG", "basic_model",
}


@pytest.mark.parametrize("profile", config.group_options("zoo"))
def test_every_profile_composes_and_plans(profile):
    params = config.composed_params([f"zoo={profile}"])
    entries, skipped = zoo.plan(params["zoo"])
    names = [entry.name for entry in entries]
    assert len(names) == len(set(names)) > 0
    assert {entry.family for entry in entries} <= CONTRACT_FAMILIES
    assert all(entry.input_width >= zoo.MIN_INPUT_WIDTH.get(entry.architecture, 1) for entry in entries)
    sizes = {"ci": (5, 15), "small": (80, 130), "full": (1000, 5000)}[profile]
    assert sizes[0] <= len(entries) <= sizes[1]
    if profile == "small":
        widths = [entry.input_width for entry in entries]
        assert min(widths) <= 64 and max(widths) >= 299
        assert len({entry.family for entry in entries}) >= 14
        assert sum(entry.synthetic for entry in entries) >= 20


def test_families_agree_with_the_schema():
    for architecture in ("ResNet50", "ResNet152V2", "DenseNet121", "InceptionV3", "InceptionResNetV2", "Xception", "VGG16"):
        assert zoo.FAMILIES[architecture] == schema.family_of(architecture)
    assert schema.family_of(zoo.synthetic.BasicModel(3, 3, 8, 1, 32).name) == "basic_model"
    assert set(zoo.FAMILIES.values()) <= CONTRACT_FAMILIES


def test_impossible_and_unavailable_combinations_are_skipped_with_a_reason():
    profile = {"seed": 0, "applications": [{"architectures": ["InceptionV3", "Xception", "RegNetX002"], "input_widths": [64, 75]}]}
    entries, skipped = zoo.plan(profile)
    assert [entry.name for entry in entries] == ["InceptionV3_75", "Xception_75"]
    reasons = {item.name: item.reason for item in skipped}
    assert "at least 75" in reasons["InceptionV3_64"] and "at least 71" in reasons["Xception_64"]
    assert "Keras 3.15" in reasons["RegNetX002"]
    with pytest.raises(ValueError, match="unknown architecture 'ResNet18'"):
        zoo.plan({"seed": 0, "applications": [{"architectures": ["ResNet18"], "input_widths": [64]}]})


def test_alpha_names_and_duplicates():
    group = {"architectures": ["MobileNetV2", "ResNet50"], "alphas": [0.5, 1], "input_widths": [96]}
    entries, skipped = zoo.plan({"seed": 0, "applications": [group, group]})
    assert [entry.name for entry in entries] == ["MobileNetV2-a0.5_96", "MobileNetV2-a1.0_96", "ResNet50_96"]
    assert len(skipped) == 3 and all("more than once" in item.reason for item in skipped)


@pytest.fixture(scope="module")
def ci_zoo(tmp_path_factory) -> Path:
    """A project folder in tmp with the ci profile built by `perfpred zoo`."""
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(REPO / "conf", root / "conf")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PERFPRED_ROOT", str(root))
        assert cli.main(["params", "zoo=ci"]) == 0
        assert cli.main(["zoo"]) == 0
    return root


@pytest.mark.slow
@pytest.mark.tensorflow
def test_ci_zoo_manifest_contract(ci_zoo):
    manifest_path = ci_zoo / "data/zoo/manifest.csv"
    raw = pd.read_csv(manifest_path)
    assert tuple(raw.columns) == zoo.MANIFEST_COLUMNS
    manifest = zoo.read_manifest(manifest_path)
    entries, _ = zoo.plan(config.composed_params(["zoo=ci"])["zoo"])
    assert list(manifest["name"]) == [entry.name for entry in entries]
    assert manifest["name"].is_unique
    assert set(manifest["source"]) == {"keras.applications", "synthetic"}
    assert (manifest["synthetic"] == (manifest["source"] == "synthetic")).all()
    assert (manifest.loc[manifest["synthetic"], "family"] == "basic_model").all()
    for row in manifest.itertuples():
        assert not Path(row.descriptor).is_absolute()
        assert Path(row.descriptor) == Path("data/zoo/models") / f"{row.name}.json"
    assert sorted(p.name for p in (ci_zoo / "data/zoo/models").iterdir()) == sorted(f"{n}.json" for n in manifest["name"])


@pytest.mark.slow
@pytest.mark.tensorflow
def test_ci_descriptors_load_and_predict(ci_zoo):
    import keras

    manifest = zoo.read_manifest(ci_zoo / "data/zoo/manifest.csv")
    rng = np.random.default_rng(0)
    for row in manifest.itertuples():
        model = keras.models.model_from_json((ci_zoo / row.descriptor).read_text())
        assert tuple(model.input_shape) == (None, row.input_width, row.input_width, 3), row.name
        if not row.synthetic:
            assert tuple(model.output_shape) == (None, 1000), row.name
        probabilities = model(rng.random((1, row.input_width, row.input_width, 3), dtype=np.float32)).numpy()
        assert probabilities.shape == (1, model.output_shape[-1])
        assert np.isfinite(probabilities).all() and np.isclose(probabilities.sum(), 1.0, atol=1e-3), row.name


@pytest.mark.slow
@pytest.mark.tensorflow
def test_rebuilding_gives_byte_identical_descriptors(ci_zoo):
    params = config.composed_params(["zoo=ci"])["zoo"]
    entries, _ = zoo.plan(params)
    for entry in (entries[0], entries[-1]):  # one keras.applications model, one basic_model
        text = (ci_zoo / "data/zoo/models" / f"{entry.name}.json").read_text()
        assert zoo.descriptor(entry, int(params["seed"])) == text
        assert zoo.build(entry, int(params["seed"])).to_json() == text  # built with initialised weights too


@pytest.mark.slow
@pytest.mark.tensorflow
def test_minimum_input_widths_are_keras_own():
    for architecture, minimum in zoo.MIN_INPUT_WIDTH.items():
        entry = zoo.Entry(f"{architecture}_{minimum}", zoo.FAMILIES[architecture], minimum, "keras.applications", architecture)
        assert zoo.build(entry, seed=0).output_shape == (None, 1000)
        below = zoo.Entry("below", entry.family, minimum - 1, entry.source, architecture)
        with pytest.raises(ValueError, match=f"at least {minimum}"):
            zoo.build(below, seed=0)
