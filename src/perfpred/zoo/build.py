"""The `zoo` stage: the model zoo as Keras JSON descriptors (never weights) and its manifest.

A profile (conf/zoo/<name>.yaml, read from params.yaml) lists keras.applications architectures over input
widths and width multipliers, and the synthetic basic_model ranges (perfpred.zoo.synthetic). Every descriptor
is the `to_json()` of the model keras.applications builds at that exact input width with `weights=None`,
`include_top=True`, `classes=1000` (a deployment classifier): no re-targeting, so padding layers that
depend on the input size (MobileNetV2, EfficientNet, NASNet) and the classifier's inputs are what Keras
builds. Combinations Keras refuses are skipped, each with its reason.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from perfpred import config
from perfpred.zoo import synthetic

MANIFEST_COLUMNS: tuple[str, ...] = ("name", "family", "input_width", "descriptor", "source", "synthetic")
MANIFEST = "manifest.csv"
MODELS_DIR = "models"


def _named(family: str, *architectures: str) -> dict[str, str]:
    return dict.fromkeys(architectures, family)


#: keras.applications architecture -> family (the families of perfpred.data.schema.family_of where they overlap).
FAMILIES: dict[str, str] = (
    _named("ResNet", "ResNet50", "ResNet101", "ResNet152")
    | _named("ResNetV2", "ResNet50V2", "ResNet101V2", "ResNet152V2")
    | _named("DenseNet", "DenseNet121", "DenseNet169", "DenseNet201")
    | _named("MobileNetV1", "MobileNet")
    | _named("MobileNetV2", "MobileNetV2")
    | _named("MobileNetV3", "MobileNetV3Small", "MobileNetV3Large")
    | _named("EfficientNet", *(f"EfficientNetB{i}" for i in range(8)))
    | _named("EfficientNetV2", *(f"EfficientNetV2{v}" for v in ("B0", "B1", "B2", "B3", "S", "M", "L")))
    | _named("InceptionV3", "InceptionV3")
    | _named("InceptionResNetV2", "InceptionResNetV2")
    | _named("Xception", "Xception")
    | _named("NASNet", "NASNetMobile", "NASNetLarge")
    | _named("ConvNeXt", *(f"ConvNeXt{s}" for s in ("Tiny", "Small", "Base", "Large", "XLarge")))
    | _named("VGG", "VGG16", "VGG19")
)

#: Architectures that take a width multiplier `alpha`.
WITH_ALPHA: frozenset[str] = frozenset({"MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large"})

#: Smallest input width each family builds at with include_top=True in Keras 3.15: Keras' own check,
#: which is also where the maps stop collapsing (every family was built at 32, 48, 64, 71, 75, 96, 128,
#: 160, 192, 224, 256, 299, 320 and 331: all widths from these minima build; tests/test_zoo.py checks the
#: minima). NASNet's fixed 224/331 input holds only for weights="imagenet": with weights=None any width
#: from 32 builds, with its classifier.
MIN_INPUT_WIDTH: dict[str, int] = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}
DEFAULT_MIN_INPUT_WIDTH = 32

#: Families that are not in keras.applications of Keras 3.15 (RegNet was in tf.keras 2.x only).
UNAVAILABLE: dict[str, str] = {"RegNet": "RegNetX/RegNetY are not in keras.applications of Keras 3.15 (tf.keras 2.x only)"}


@dataclass(frozen=True)
class Entry:
    """One model of the zoo: its manifest row and how to build it."""

    name: str
    family: str
    input_width: int
    source: str
    architecture: str = ""
    alpha: float | None = None
    basic_model: synthetic.BasicModel | None = None

    @property
    def synthetic(self) -> bool:
        """True for the generated basic_model networks."""
        return self.basic_model is not None


@dataclass(frozen=True)
class Skipped:
    """A combination of the profile that is not in the zoo, and why."""

    name: str
    reason: str


def _application_name(architecture: str, alpha: float | None, input_width: int) -> str:
    multiplier = f"-a{float(alpha)}" if alpha is not None else ""
    return f"{architecture}{multiplier}_{input_width}"


def _application_entries(group: Mapping) -> Iterable[Entry | Skipped]:
    """The entries (or skips) of one `applications` group of a profile: architectures x alphas x widths."""
    for architecture in group["architectures"]:
        if architecture in UNAVAILABLE or architecture.startswith(tuple(UNAVAILABLE)):
            yield Skipped(architecture, UNAVAILABLE["RegNet"])
            continue
        if architecture not in FAMILIES:
            raise ValueError(
                f"unknown architecture {architecture!r} in the zoo profile: known are {', '.join(sorted(FAMILIES))}"
            )
        alphas = group.get("alphas") if architecture in WITH_ALPHA else None
        for alpha in alphas or [None]:
            if architecture in WITH_ALPHA and alpha is None:
                alpha = 1.0
            for input_width in group["input_widths"]:
                name = _application_name(architecture, alpha, int(input_width))
                minimum = MIN_INPUT_WIDTH.get(architecture, DEFAULT_MIN_INPUT_WIDTH)
                if input_width < minimum:
                    yield Skipped(name, f"{architecture} needs an input width of at least {minimum}")
                    continue
                yield Entry(name, FAMILIES[architecture], int(input_width), "keras.applications", architecture, alpha)


def plan(profile: Mapping) -> tuple[list[Entry], list[Skipped]]:
    """The models of a zoo profile, in manifest order, and the combinations left out with their reasons."""
    entries: dict[str, Entry] = {}
    skipped: list[Skipped] = []
    for group in profile.get("applications") or []:
        for item in _application_entries(group):
            if isinstance(item, Skipped):
                skipped.append(item)
            elif item.name in entries:
                skipped.append(Skipped(item.name, "listed more than once in the profile"))
            else:
                entries[item.name] = item
    spec = profile.get("synthetic")
    if spec and spec.get("count", 0) > 0:
        models = synthetic.sample(spec, int(profile["seed"]))
        if len(models) < spec["count"]:
            skipped.append(Skipped("basic_model", f"only {len(models)} feasible combinations for count {spec['count']}"))
        for model in models:
            entries[model.name] = Entry(model.name, "basic_model", model.input_width, "synthetic", basic_model=model)
    return list(entries.values()), skipped


def build(entry: Entry, seed: int):
    """The Keras model of a zoo entry, with random weights."""
    import keras

    keras.backend.clear_session()  # restarts automatic layer names: the same JSON on every run
    if entry.basic_model is not None:
        return synthetic.build(entry.basic_model, seed)
    extra = {"alpha": entry.alpha} if entry.alpha is not None else {}
    constructor = getattr(keras.applications, entry.architecture)
    shape = (entry.input_width, entry.input_width, 3)
    return constructor(weights=None, include_top=True, classes=1000, input_shape=shape, **extra)


def descriptor(entry: Entry, seed: int) -> str:
    """The Keras 3 JSON descriptor of a zoo entry (`model.to_json()`, no weights)."""
    import keras

    # Variables created in a StatelessScope are never initialised: the same JSON, a third faster to build.
    with keras.StatelessScope():
        return build(entry, seed).to_json()


#: Zoos smaller than this are built in this process (a builder's start costs about four models' builds).
MIN_MODELS_FOR_BUILDERS = 12


def _descriptor_or_refusal(job: tuple[Entry, int]) -> tuple[str | None, str | None]:
    """(JSON, None), or (None, the first line of Keras' refusal): what a builder process returns."""
    entry, seed = job
    try:
        return descriptor(entry, seed), None
    except ValueError as error:
        return None, str(error).splitlines()[0]


@contextlib.contextmanager
def _builders(count: int):
    """Processes that build descriptors side by side (one per CPU, at most 2; None: build here, one at a time,
    for a zoo too small to repay starting them: each imports TensorFlow, ~3 s).

    Each starts a fresh interpreter (spawn: TensorFlow must not be forked) and clears Keras' session before each
    model, so a model's JSON (its automatic layer names) is the same whichever process builds it, and the
    manifest keeps the plan's order.
    """
    workers = min(len(os.sched_getaffinity(0)), 2)
    if workers < 2 or count < MIN_MODELS_FOR_BUILDERS:
        yield None
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield pool


def write_zoo(profile: Mapping, out_dir: Path, root: Path, progress: Callable[[Iterable], Iterable] = iter) -> dict:
    """Build the zoo of a profile into out_dir (manifest.csv, models/<name>.json) and return a summary."""
    entries, skipped = plan(profile)
    if not out_dir.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"zoo folder {out_dir} is outside the project {root}: the manifest's descriptor paths are relative to it")
    models_dir = out_dir / MODELS_DIR
    models_dir.mkdir(parents=True, exist_ok=True)
    for stale in models_dir.glob("*.json"):
        stale.unlink()
    seed = int(profile["seed"])
    built: list[Entry] = []
    with open(out_dir / MANIFEST, "w", newline="") as manifest, _builders(len(entries)) as pool:
        writer = csv.writer(manifest, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        texts = (pool.imap if pool else map)(_descriptor_or_refusal, [(entry, seed) for entry in entries])
        for entry in progress(entries):  # the plan's order: imap returns the builders' results in it
            text, refusal = next(texts)
            if refusal is not None:  # Keras refuses this combination: keep going, report it
                skipped.append(Skipped(entry.name, f"Keras refused it: {refusal}"))
                continue
            path = models_dir / f"{entry.name}.json"
            path.write_text(text)
            writer.writerow([entry.name, entry.family, entry.input_width, path.resolve().relative_to(root.resolve()).as_posix(),
                             entry.source, entry.synthetic])
            manifest.flush()  # an interrupted run keeps every finished row
            built.append(entry)
    families: dict[str, int] = {}
    for entry in built:
        families[entry.family] = families.get(entry.family, 0) + 1
    return {"profile": profile.get("name", ""), "built": len(built), "families": dict(sorted(families.items())),
            "skipped": [{"name": s.name, "reason": s.reason} for s in skipped]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `perfpred zoo` (the profile comes from params.yaml: `perfpred params zoo=ci`)."""
    parser.add_argument("--plan", action="store_true", help="list the models of the profile without building them")


def run(args: argparse.Namespace) -> int:
    """Build the zoo of the profile in params.yaml and print what was built and skipped."""
    from tqdm import tqdm

    params = config.load_params()
    if "zoo" not in params:
        raise config.ConfigError("params.yaml has no zoo profile: add `- zoo: small` to conf/config.yaml and run `perfpred params`")
    profile = params["zoo"]
    if args.plan:
        entries, skipped = plan(profile)
        for entry in entries:
            print(f"{entry.name},{entry.family},{entry.input_width},{entry.source}")
        print(f"{len(entries)} models, {len(skipped)} skipped")
        return 0
    start = time.perf_counter()
    out_dir = config.path("zoo", params)
    summary = write_zoo(profile, out_dir, config.project_root(), lambda items: tqdm(items, desc="zoo", unit="model"))
    elapsed_s = time.perf_counter() - start
    print(f"zoo {summary['profile']!r}: built {summary['built']} descriptors in {elapsed_s:.0f} s -> {out_dir / MANIFEST}")
    print("  per family: " + ", ".join(f"{family} {count}" for family, count in summary["families"].items()))
    print(f"  skipped {len(summary['skipped'])}")
    for item in summary["skipped"]:
        print(f"    {item['name']}: {item['reason']}")
    return 0


def read_manifest(path: Path):
    """The zoo manifest (manifest.csv) as a DataFrame with the contract's columns and dtypes."""
    import pandas as pd

    if not path.exists():
        raise FileNotFoundError(f"no zoo manifest at {path}: build the zoo first (dvc repro zoo)")
    table = pd.read_csv(path, dtype={"name": "string", "family": "string", "descriptor": "string", "source": "string"})
    missing = [column for column in MANIFEST_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(
            f"{path}: not a zoo manifest, manifest lacks column(s) {', '.join(missing)}; "
            f"expected {', '.join(MANIFEST_COLUMNS)}"
        )
    return table.astype({"input_width": "int64", "synthetic": "bool"})[list(MANIFEST_COLUMNS)]
