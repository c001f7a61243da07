"""The kernel-level method as a model-level algorithm: kernel terms joined to a target's table, the `kernels`
algorithm (estimators.KernelOverhead), and predictors that compute a model's kernel terms from its descriptor."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest

from perfpred.kernels import detector, predictor, store
from perfpred.model import estimators, train
from perfpred.serve import predict
from perfpred.serve.predictor import Predictor

RULES = {"BatchNormalization": ["conv", "depthwise"], "Activation": ["conv", "depthwise", "dense"],
         "Activation:sigmoid": ["conv"]}


def _terms(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    groups = pd.DataFrame(rng.uniform(0.02, 10, (rows, len(predictor.GROUP_COLUMNS))), columns=list(predictor.GROUP_COLUMNS))
    return groups.assign(kernel_sum_ms=groups.sum(axis=1), kernel_count=rng.integers(5, 300, rows).astype(float),
                         kernel_read_mb=rng.uniform(0.5, 200, rows), kernel_dispatch_ms=rng.uniform(0.0, 1.0, rows),
                         flops=rng.uniform(1e6, 1e10, rows))


def _law(table: pd.DataFrame) -> pd.Series:
    """Latency as a target's runtime might pay it: conv 0.6x and depthwise 2.5x as alone, the rest 1.3x."""
    factors = dict.fromkeys(predictor.GROUP_COLUMNS, 1.3) | {"kernel_conv_ms": 0.6, "kernel_depthwise_ms": 2.5}
    kernels = sum(factor * table[column] for column, factor in factors.items())
    return kernels + 0.004 * table["kernel_count"] + 0.01 * table["kernel_read_mb"] + 0.2


def test_kernel_overhead_learns_each_groups_factor_and_reads_only_the_terms():
    table = _terms(60)
    truth = _law(table)
    model = estimators.KernelOverhead().fit(table, truth)
    np.testing.assert_allclose(model.predict(table), truth, rtol=0.02)
    factor = dict(zip(predictor.GROUP_COLUMNS, model.coefficients_, strict=False))
    assert factor["kernel_depthwise_ms"] > 2 * factor["kernel_conv_ms"]  # as the law has them
    shuffled = table.assign(flops=table["flops"][::-1].to_numpy(), kernel_sum_ms=0.0)  # columns it must not read
    np.testing.assert_allclose(model.predict(shuffled), model.predict(table))
    with pytest.raises(ValueError, match="kernel-train"):
        estimators.KernelOverhead().fit(table.drop(columns=["kernel_count"]), truth)


def test_the_kernels_algorithm_pins_its_constant_at_the_targets_call_cost(tmp_path, monkeypatch):
    """`perfpred train` gives the `kernels` algorithm the kernel model's call cost as its per-model constant."""
    table = _terms(60)
    groups = list(predictor.GROUP_COLUMNS)
    table.loc[:9, groups] *= 0.01  # models of almost no kernel work, where the constant is what they cost
    table["kernel_sum_ms"] = table[groups].sum(axis=1)
    truth = _law(table)
    pinned = estimators.KernelOverhead(call_ms=0.05).fit(table, truth)
    assert pinned.coefficients_[-1] == pytest.approx(0.05)
    assert estimators.KernelOverhead().fit(table, truth).coefficients_[-1] == pytest.approx(0.2, rel=0.05)  # free
    path = tmp_path / "t.pkl"
    monkeypatch.setattr(store, "predictor_path", lambda target, params=None: path)
    assert train.with_call_cost(estimators.KernelOverhead(), "t").call_ms is None  # no kernel predictors: free
    regressors = {kind: predictor.KernelRegressor(coefficients=np.r_[constant, 1.0, 0.1])
                  for kind, constant in (("conv", 0.09), ("unary", 0.1), ("add", 0.13))}
    path.write_bytes(pickle.dumps(predictor.KernelModel("t", regressors)))
    assert train.with_call_cost(estimators.KernelOverhead(), "t").call_ms == pytest.approx(0.1)
    assert train.with_call_cost(estimators.KernelOverhead(call_ms=0.3), "t").call_ms == 0.3  # set already: kept
    other = estimators.BaselineRatioRegressor(None, ["flops"])
    assert train.with_call_cost(other, "t") is other and not hasattr(other, "call_ms")  # another algorithm: as it was


def test_kernel_terms_join_the_table_and_only_complete_ones_become_features(tmp_path, monkeypatch):
    table = pd.DataFrame({"model": ["a_32", "a_64", "b_32"], "input_width": [32, 64, 32], "flops": [1.0, 4.0, 2.0]})
    for column in estimators.schema.FEATURE_COLUMNS:
        if column not in table:
            table[column] = 1.0
    path = tmp_path / "t.features.parquet"
    monkeypatch.setattr(store, "features_path", lambda target, params=None: path)
    assert estimators.with_kernel_terms(table, "t") is table  # no kernel predictors: unchanged
    terms = pd.DataFrame({"model": ["a_32", "a_64", "b_32"], "input_width": [32, 64, 32], "kernel_sum_ms": [1.0, 2.0, 3.0],
                          "kernel_count": [4.0, 5.0, 6.0], "kernel_read_mb": [7.0, 8.0, 9.0],
                          "kernel_dispatch_ms": [0.1, 0.2, 0.3], "kernel_latency_ms": 0.0})
    terms = terms.assign(**dict.fromkeys(predictor.GROUP_COLUMNS, 0.5))
    terms.iloc[::-1].to_parquet(path)  # order must not matter: the join is on (model, input_width)
    joined = estimators.with_kernel_terms(table, "t")
    assert joined["kernel_sum_ms"].tolist() == [1.0, 2.0, 3.0] and "kernel_latency_ms" not in joined  # no model-level fit
    assert estimators.feature_columns(joined)[-5:] == ["neurons", *predictor.TERM_COLUMNS]  # what ens_kernels reads
    kernel_columns = list(predictor.TERM_COLUMNS + predictor.GROUP_COLUMNS)
    assert estimators.feature_columns(joined, kernel_groups=True)[-len(kernel_columns):] == kernel_columns
    terms[terms["model"] != "b_32"].to_parquet(path)  # a model without a descriptor: the terms are incomplete
    assert not set(predictor.TERM_COLUMNS) & set(estimators.feature_columns(estimators.with_kernel_terms(table, "t")))


def test_the_kernels_algorithm_needs_kernel_terms_and_the_latency_metric():
    cfg, _ = train.tuned_config("jetson-nano", "latency", "kernels", use_tuned=False)
    table = pd.DataFrame({"model": ["a_32"], "input_width": [32]})
    with pytest.raises(ValueError, match="kernel-measure --target jetson-nano"):  # boards' rows have no descriptors
        train.kernel_terms_table(cfg, table, "jetson-nano", "latency")
    cfg, _ = train.tuned_config("jetson-nano", "memory", "kernels", use_tuned=False)
    with pytest.raises(ValueError, match="predicts latency, not memory"):
        train.kernel_terms_table(cfg, table, "jetson-nano", "memory")
    cfg, _ = train.tuned_config("jetson-nano", "latency", "svr", use_tuned=False)
    assert train.kernel_terms_table(cfg, table, "jetson-nano", "latency") is table  # train.kernel_terms is off


def _small_net():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    image = keras.Input((24, 24, 3))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False)(image)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(image, layers.Dense(5)(x), name="small_net")


def _kernel_predictor() -> Predictor:
    """A kernels predictor whose kernel model is a roofline per kind (no forest), and its training rows."""
    kernel_model = predictor.KernelModel("t")
    for kind in detector.KINDS:
        regressor = predictor.KernelRegressor()
        regressor.coefficients = np.array([0.05, 0.002, 0.01])  # ms per call, per MFLOP, per MB moved
        kernel_model.regressors[kind] = regressor
    rows = _terms(30, seed=1)
    latency = _law(rows)
    columns = list(predictor.TERM_COLUMNS + predictor.GROUP_COLUMNS)
    return Predictor(estimator=estimators.KernelOverhead().fit(rows[columns], latency), target="t", metric="latency",
                     column="latency_ms", algorithm="kernels", features=columns, calibration=np.zeros(401),
                     kernel_model=kernel_model, kernel_rules=RULES)


def test_a_kernel_level_predictor_computes_the_terms_from_the_descriptor(tmp_path):
    net = _small_net()
    path = tmp_path / "small_net.json"
    path.write_text(net.to_json())
    fitted = _kernel_predictor()
    graph = predict.model_graph(str(path))
    kernels = detector.detect_graph(graph, RULES)
    expected = fitted.kernel_model.term_features(kernels)
    assert fitted.kernel_terms(graph) == expected and expected["kernel_count"] == len(kernels) == 4
    row = pd.DataFrame([{"model": "small_net"}])
    answer = predict.answer_rows(fitted, row, 0.9, graph)
    assert answer["latency_ms"].iloc[0] == pytest.approx(fitted.estimator.predict(pd.DataFrame([expected]))[0])
    assert predict.model_graph(net) is not None  # a keras.Model is serialised
    assert predict.answer_rows(fitted, row, 0.9, None) is None  # no model graph (a features table): no kernel terms
    with pytest.raises(ValueError, match="perfpred kernels MODEL --target t"):
        fitted.predict(row)
    given = row.assign(**expected)  # terms given as columns (the served model's input): no descriptor needed
    assert predict.answer_rows(fitted, given, 0.9, None)["latency_ms"].iloc[0] == answer["latency_ms"].iloc[0]
    json.dumps(expected)  # plain floats


def _small_onnx(path):
    """small_net written as an exporter writes it (channels first, the batch norm folded into the convolution's
    bias): Conv 3x3 -> Sigmoid -> depthwise Conv 3x3 / 2 -> GlobalAveragePool -> Flatten -> Gemm."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def weight(name, *dims):
        return numpy_helper.from_array(rng.standard_normal(dims).astype("float32"), name)

    nodes = [helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Sigmoid", ["c1"], ["r1"], name="sigmoid"),  # `Activation:sigmoid`, as RULES know it
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], group=8, strides=[2, 2], pads=[1, 1, 1, 1],
                              name="depthwise"),
             helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["out"], transB=1, name="dense")]
    graph = helper.make_graph(nodes, "small_net", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 24, 24])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
                              [weight("w1", 8, 3, 3, 3), weight("b1", 8), weight("w2", 8, 1, 3, 3), weight("b2", 8),
                               weight("w3", 5, 8), weight("b3", 5)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_a_kernel_level_predictor_computes_the_terms_from_an_onnx_file(tmp_path):
    from perfpred.kernels.onnx_kernels import detect_onnx

    path = _small_onnx(tmp_path / "small_net.onnx")
    fitted = _kernel_predictor()
    graph = predict.model_graph(str(path))
    assert graph == path  # the kernel source of an ONNX file is the file
    kernels = detect_onnx(path, RULES)
    assert [k.kind for k in kernels] == ["conv", "depthwise", "globalpool", "dense"]  # the predictor's own rules
    assert [k.kind for k in detect_onnx(path, {})] == ["conv", "unary", "depthwise", "globalpool", "dense"]
    expected = fitted.kernel_model.term_features(kernels)
    assert fitted.kernel_terms(graph) == expected and expected["kernel_count"] == 4
    keras_terms = fitted.kernel_terms(predict.model_graph(_small_net_json(tmp_path)))
    assert expected["kernel_count"] == keras_terms["kernel_count"]  # the Keras original has the same kernels
    assert expected["kernel_read_mb"] == pytest.approx(keras_terms["kernel_read_mb"], rel=0.03)
    row = pd.DataFrame([{"model": "small_net"}])
    answer = predict.answer_rows(fitted, row, 0.9, graph)
    assert answer is not None  # no fallback to @model-level: the terms come from the ONNX kernels
    assert answer["latency_ms"].iloc[0] == pytest.approx(fitted.estimator.predict(pd.DataFrame([expected]))[0])
    resized = fitted.kernel_terms(graph, 48)  # --input-size re-targets the ONNX input as describe does
    assert resized["kernel_read_mb"] > expected["kernel_read_mb"]


def _small_net_json(tmp_path):
    path = tmp_path / "small_net.json"
    path.write_text(_small_net().to_json())
    return str(path)


@pytest.mark.slow
@pytest.mark.tensorflow
def test_a_kernel_level_champion_answers_for_keras_models_and_the_model_level_version_for_the_rest(tmp_path):
    """`perfpred train` of `kernels` and `poly` on a target with kernel terms; `perfpred predict` of a Keras JSON
    runs the kernel-level champion on the model's own kernels, a features table (no graph) gets `@model-level`."""
    import pickle
    import subprocess
    import sys

    import trained_store

    project = tmp_path / "project"
    project.mkdir()
    trained_store.make_project(project, {"host-cpu-tf": "nano"}, train_fraction=0.25)
    table = pd.read_parquet(project / "data/measurements/host-cpu-tf.parquet")
    table = table[table["latency_ms"].notna()]
    rng = np.random.default_rng(0)
    count, read_mb = rng.integers(10, 60, len(table)).astype(float), rng.uniform(0.1, 2.0, len(table))
    kernel_sum = (table["latency_ms"].to_numpy() - 0.002 * count - 0.01 * read_mb - 0.1) / 1.2  # the overhead law, exactly
    assert (kernel_sum > 0).all()
    shares = rng.dirichlet(np.ones(len(predictor.GROUP_COLUMNS)), len(table))
    folder = project / "data/kernels/predictors"
    folder.mkdir(parents=True)
    terms = pd.DataFrame({"model": table["model"], "input_width": table["input_width"], "kernel_sum_ms": kernel_sum,
                          "kernel_count": count, "kernel_read_mb": read_mb, "kernel_dispatch_ms": 0.0})
    terms.assign(**{c: kernel_sum * shares[:, i] for i, c in enumerate(predictor.GROUP_COLUMNS)}).to_parquet(
        folder / "host-cpu-tf.features.parquet")
    (folder / "host-cpu-tf.pkl").write_bytes(pickle.dumps(_kernel_predictor().kernel_model))
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    trained_store.perfpred(project, "train", "-m", "target=host-cpu-tf", "metric=latency", "algorithm=kernels,poly",
                           *trained_store.TRAIN_SETTINGS, tracking_uri=uri)
    net = project / "small_net.json"
    net.write_text(_small_net().to_json())
    predicted = json.loads(trained_store.perfpred(project, "predict", str(net), "--target", "host-cpu-tf", "--json",
                                                  tracking_uri=uri).stdout)[0]
    assert predicted["latency_predictor"].startswith("kernels v") and "model-level" not in predicted["latency_predictor"]
    expected = _kernel_predictor()  # the same kernel model the version carries: its terms of small_net
    from perfpred.serve import registry

    version = registry.client(uri).get_model_version_by_alias("host-cpu-tf-latency", "champion")
    script = ("import json, sys; import pandas as pd; from perfpred.serve import predict, loader; "
              "p = loader.load_predictor('host-cpu-tf', 'latency'); "
              "g = predict.model_graph(sys.argv[1]); terms = p.kernel_terms(g); "
              "rows = pd.DataFrame([{'model': 'small_net'} | predict.describe_model(sys.argv[1])]); "
              "kernel = float(p.estimator.predict(rows.assign(**terms)[p.features])[0]); "
              "table = predict.predict_features(rows, ['host-cpu-tf']); "
              "print(json.dumps({'kernel': kernel, 'terms': terms, 'fallback': table['latency_predictor'][0], "
              "'value': float(table['latency_ms'][0])}))")
    env = trained_store.environment(project, uri)
    done = subprocess.run([sys.executable, "-c", script, str(net)], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300, check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["terms"] == pytest.approx(expected.kernel_terms(predict.model_graph(str(net))))
    assert predicted["latency_ms"] == pytest.approx(found["kernel"])
    assert found["fallback"].startswith("poly v") and "model-level" in found["fallback"] and found["value"] > 0
    assert registry.client(uri).get_model_version(version.name, version.version).tags["kernel_terms"] == "true"


def test_pooled_sources_bring_their_own_kernel_terms(tmp_path, monkeypatch):
    """A pooled model that reads kernel terms joins to each source's rows the terms of that source's own kernel
    predictors (a kernel sum on TFLite is not one on TensorFlow), and fits on them."""
    import shutil
    from pathlib import Path

    from perfpred.data import measurements
    from perfpred.model import pooled

    repo = Path(__file__).resolve().parents[1]
    shutil.copytree(repo / "conf", tmp_path / "conf")
    monkeypatch.setenv("PERFPRED_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    rows = 40
    base = _terms(rows).assign(model=[f"net{i}_{32 * (1 + i % 3)}" for i in range(rows)],
                               input_width=[32 * (1 + i % 3) for i in range(rows)])
    for column in estimators.schema.FEATURE_COLUMNS:
        if column not in base:
            base[column] = rng.uniform(1e3, 1e7, rows)
    base["input_size"] = base["input_width"].astype(float) ** 2 * 3
    slower = {"host-cpu-tf": 1.0, "host-cpu-tflite": 3.0}  # the source runs every kernel 3x slower
    for target, factor in slower.items():
        terms = base[["model", "input_width"]].assign(**{c: factor * base[c] for c in predictor.TERM_COLUMNS + predictor.GROUP_COLUMNS})
        store.features_path(target).parent.mkdir(parents=True, exist_ok=True)
        terms.assign(kernel_latency_ms=0.0).to_parquet(store.features_path(target))
        table = base.drop(columns=list(predictor.TERM_COLUMNS + predictor.GROUP_COLUMNS)).assign(
            family="net", source="test", synthetic=False, latency_ms=factor * _law(base))
        measurements.write_table(table, tmp_path / f"data/measurements/{target}.parquet")
    pooled._table.cache_clear()
    try:
        own = estimators.with_kernel_terms(estimators.training_table("host-cpu-tf", "latency"), "host-cpu-tf")
        features = estimators.feature_columns(own)
        assert "kernel_sum_ms" in features
        model = pooled.PooledSVR(target="host-cpu-tf", metric="latency", sources=["host-cpu-tflite"])
        train_rows = own.iloc[:30]
        [(name, source, measured)] = model.source_rows(train_rows[features])
        assert name == "host-cpu-tflite"
        by_model = source.set_index("model")["kernel_sum_ms"]
        mine = own.set_index("model")["kernel_sum_ms"]
        np.testing.assert_allclose(by_model.to_numpy(), 3 * mine.loc[by_model.index].to_numpy())  # its own terms
        assert not set(source["model"]) & set(own["model"].iloc[30:])  # held-out networks are in no source
        model.fit(train_rows[features], train_rows["latency_ms"])
        assert model.borrowed_rows_ == len(source)
        predicted = model.predict(own.iloc[30:][features])
        assert np.all(np.isfinite(predicted)) and np.all(predicted > 0)
    finally:
        pooled._table.cache_clear()


def test_a_geometric_blend_averages_relative_errors_and_feeds_each_member_its_columns():
    from sklearn.linear_model import LinearRegression

    table = _terms(60)
    truth = _law(table)
    class Scaled:  # a member off by a constant factor: `factor` times the law
        def __init__(self, factor):
            self.factor = factor

        def get_params(self, deep=True):
            return {"factor": self.factor}

        def fit(self, features, target):
            return self

        def predict(self, features):
            return self.factor * _law(features).to_numpy()

    blend = estimators.GeometricBlend([("fast", Scaled(0.8), []), ("slow", Scaled(1.25), [])]).fit(table, truth)
    np.testing.assert_allclose(blend.predict(table), truth, rtol=1e-9)  # sqrt(0.8 x 1.25) = 1: the truth, not 1.025 x
    groups = list(predictor.GROUP_COLUMNS)
    blend = estimators.GeometricBlend([("model-level", LinearRegression(), groups), ("kernels", estimators.KernelOverhead(), [])],
                                      [1, 3]).fit(table, truth)
    assert blend.fitted_[0][1].n_features_in_ == len(table.columns) - len(groups)  # the group sums never reached it
    assert blend.weights_.tolist() == [0.25, 0.75]
    with pytest.raises(ValueError, match="non-negative weights"):
        estimators.GeometricBlend([("a", LinearRegression(), [])], [1, 2]).fit(table, truth)


def test_blend_kernels_is_built_from_its_members_as_each_trains_alone():
    blend = train.build_estimator(train.tuned_config("host-cpu-tf", "latency", "blend_kernels")[0].algorithm,
                                  "host-cpu-tf", "latency")
    assert [name for name, _, _ in blend.members] == ["ens_kernels", "kernels"]
    assert blend.members[0][2] == list(predictor.GROUP_COLUMNS) and blend.members[1][2] == []
    assert type(blend.members[1][1]).__name__ == "KernelOverhead"


def test_an_onnx_layer_normalization_is_a_unary_kernel_at_the_layer_norm_rate(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from perfpred.kernels.onnx_kernels import detect_onnx

    scale, bias = (numpy_helper.from_array(np.ones(16, "float32"), n) for n in ("scale", "bias"))
    nodes = [helper.make_node("LayerNormalization", ["image", "scale", "bias"], ["out"], axis=-1, name="norm")]
    graph = helper.make_graph(nodes, "norm", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 8, 8, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], [scale, bias])
    path = tmp_path / "norm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    (kernel,) = detect_onnx(path, {})
    assert (kernel.kind, kernel.function, kernel.classes) == ("unary", "layer_norm", ["LayerNormalization"])
