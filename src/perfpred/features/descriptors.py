"""Keras model descriptors read as plain data: Keras 2 and Keras 3 JSON, .keras files, layer tables.

Nothing here imports Keras or executes anything a descriptor holds (legacy `Lambda` layers carry
marshalled bytecode: it is never unmarshalled).
"""

from __future__ import annotations

import csv
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

#: class names of a whole model (Keras 2 "Model", Keras 3 "Functional", both "Sequential").
MODEL_CLASSES = ("Functional", "Model", "Sequential")


class DescriptorError(ValueError):
    """A model descriptor that cannot be read or described (names the file and the layer)."""


@dataclass(frozen=True)
class TensorRef:
    """One input of a layer call: the producing layer, its call (node) and which of its outputs."""

    layer: str
    node: int = 0
    tensor: int = 0


@dataclass
class Layer:
    """One layer of a graph: its class, its config and, per call, the tensors it reads."""

    name: str
    class_name: str
    config: dict
    calls: list[list[TensorRef]] = field(default_factory=list)
    inner: Graph | None = None  # a nested model


@dataclass
class Graph:
    """A functional layer graph in the order of the descriptor, with its input and output tensors."""

    name: str
    layers: list[Layer]
    inputs: list[TensorRef]
    outputs: list[TensorRef]
    source: str = "<model>"
    keras_version: str | None = None  # the version that wrote the descriptor (Keras 2 JSON has it)


def load(source, origin: str | None = None) -> Graph:
    """Read a descriptor (a path to .json / .keras, a JSON dict or string) into a Graph."""
    if isinstance(source, dict):
        return parse(source, origin or "<dict>")
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"no model descriptor at {path}")
    if path.suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as archive:
                text = archive.read("config.json").decode()
        except (zipfile.BadZipFile, KeyError) as error:
            raise DescriptorError(f"{path}: not a .keras file with a config.json ({error})") from None
        return parse(_json(text, f"{path}!config.json"), str(path))
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise DescriptorError(f"{path}: neither a Keras JSON descriptor (.json), a .keras archive nor an ONNX model "
                              "(.onnx): perfpred reads these three formats") from None
    return parse(_json(text, str(path)), str(path))


def _json(text: str, origin: str) -> dict:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DescriptorError(
            f"{origin}: malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None


def parse(descriptor: dict, origin: str = "<model>") -> Graph:
    """Normalise a Keras 2 or Keras 3 model JSON (Functional, Model or Sequential) into a Graph."""
    if not isinstance(descriptor, dict) or descriptor.get("class_name") not in MODEL_CLASSES:
        found = descriptor.get("class_name") if isinstance(descriptor, dict) else type(descriptor).__name__
        raise DescriptorError(
            f"{origin}: not a Keras model descriptor (class_name {found!r}; expected one of {', '.join(MODEL_CLASSES)})"
        )
    config = descriptor.get("config")
    if isinstance(config, list):  # Keras 2.2 Sequential: config is the layer list
        config = {"layers": config}
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise DescriptorError(f"{origin}: model descriptor has no config.layers list")
    version = descriptor.get("keras_version")
    version = str(version) if version is not None else None
    if descriptor["class_name"] == "Sequential":
        graph = _sequential(config, origin)
        graph.keras_version = version
        return graph
    layers = [_layer(entry, origin) for entry in config["layers"]]
    graph = Graph(
        name=config.get("name", "model"),
        layers=layers,
        inputs=_endpoints(config.get("input_layers"), origin),
        outputs=_endpoints(config.get("output_layers"), origin),
        source=origin,
        keras_version=version,
    )
    known = {layer.name for layer in layers}
    for layer in layers:
        for call in layer.calls:
            for ref in call:
                if ref.layer not in known:
                    raise DescriptorError(f"{origin}: layer {layer.name!r} reads unknown layer {ref.layer!r}")
    return graph


def _layer(entry: dict, origin: str) -> Layer:
    if not isinstance(entry, dict) or "class_name" not in entry:
        raise DescriptorError(f"{origin}: a layer entry without class_name: {str(entry)[:80]}")
    config = entry.get("config") or {}
    name = entry.get("name") or config.get("name")
    layer = Layer(name=name, class_name=entry["class_name"], config=config)
    layer.calls = [_call(node, origin, name) for node in entry.get("inbound_nodes") or []]
    if entry["class_name"] in MODEL_CLASSES:
        layer.inner = parse(entry, f"{origin}:{name}")
    return layer


def _call(node, origin: str, name: str) -> list[TensorRef]:
    """Tensors read by one call of a layer, in argument order."""
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}} holding __keras_tensor__ entries
        refs: list[TensorRef] = []
        _collect_history(node.get("args", []), refs)
        _collect_history(node.get("kwargs", {}), refs)
        return refs
    if isinstance(node, list):  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
        return [TensorRef(str(item[0]), int(item[1]), int(item[2])) for item in node]
    raise DescriptorError(f"{origin}: layer {name!r} has an inbound node of unknown format: {str(node)[:80]}")


def _collect_history(value, refs: list[TensorRef]) -> None:
    if isinstance(value, dict):
        history = value.get("config", {}).get("keras_history") if value.get("class_name") == "__keras_tensor__" else None
        if history is not None:
            refs.append(TensorRef(str(history[0]), int(history[1]), int(history[2])))
            return
        for item in value.values():
            _collect_history(item, refs)
    elif isinstance(value, list):
        for item in value:
            _collect_history(item, refs)


def _endpoints(value, origin: str) -> list[TensorRef]:
    if not value:
        raise DescriptorError(f"{origin}: model descriptor names no input_layers/output_layers")
    if isinstance(value[0], str):  # Keras 3 single tensor: [name, node, tensor]
        value = [value]
    return [TensorRef(str(item[0]), int(item[1]), int(item[2])) for item in value]


def _sequential(config: dict, origin: str) -> Graph:
    """A Sequential model as a chain; its input shape comes from an InputLayer or the first layer."""
    entries = [entry for entry in config["layers"]]
    layers: list[Layer] = []
    if not entries or entries[0].get("class_name") != "InputLayer":
        first = entries[0].get("config", {}) if entries else {}
        shape = first.get("batch_input_shape") or first.get("batch_shape") or config.get("build_input_shape")
        if shape is None:
            raise DescriptorError(f"{origin}: Sequential model without an input shape")
        layers.append(Layer("input", "InputLayer", {"batch_shape": shape}))
    previous = layers[0].name if layers else None
    for entry in entries:
        layer = _layer({**entry, "inbound_nodes": []}, origin)
        if previous is not None:
            layer.calls = [[TensorRef(previous)]]
        layers.append(layer)
        previous = layer.name
    return Graph(config.get("name", "sequential"), layers, [TensorRef(layers[0].name)], [TensorRef(previous)], origin)


def layer_table(descriptor: Path) -> dict[str, dict] | None:
    """The per-layer table `<stem>.layers.csv` beside a descriptor: layer name -> input/output shapes."""
    table = Path(descriptor).with_suffix(".layers.csv")
    if not table.exists():
        return None
    rows = {}
    with table.open(newline="") as handle:
        for row in csv.DictReader(handle):
            rows[row["layer_name"]] = {
                "class_name": row["class_name"],
                "input_shape": _shape(row["input_shape"]),
                "output_shape": _shape(row["output_shape"]),
                "params": int(float(row["Params"])),
            }
    return rows


def _shape(text: str) -> tuple[int, ...] | None:
    """'[None, 56, 56, 4]' -> (56, 56, 4), batch dropped; a list of shapes -> the first."""
    first = text.split("]")[0]
    dims = [part.strip(" [()") for part in first.split(",")]
    try:
        return tuple(int(d) for d in dims[1:] if d)
    except ValueError:
        return None
