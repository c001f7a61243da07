"""What `perfpred measure MODEL` measures: a descriptor file, a zoo model, or an architecture at an input size."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from perfpred import config
from perfpred.zoo import build as zoo


def architecture_name(zoo_name: str) -> str:
    """A zoo name without its input width and alpha mark: MobileNetV2-a1.0_160 -> MobileNetV2-1.0."""
    return re.sub(r"-a(?=\d)", "-", re.sub(r"_\d+$", "", zoo_name))


def resolve_model(model: str, params: dict, input_size: int | None = None) -> tuple[str, Path, int | None]:
    """A descriptor path, a zoo name, or an architecture (+ input size) -> (name, descriptor path, input width)."""
    path = Path(model)
    if path.suffix == ".json" or path.exists():
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such descriptor")
        return path.stem, path, None
    zoo_dir = config.path("zoo", params)
    manifest = zoo.read_manifest(zoo_dir / zoo.MANIFEST)
    match = manifest[manifest["name"] == model]
    if not match.empty:
        entry = match.iloc[0]
        return model, config.project_root() / entry["descriptor"], int(entry["input_width"])
    # An architecture name: any of its zoo descriptors, rebuilt at the requested width (the agent does that).
    same = [e for e in manifest.itertuples(index=False) if architecture_name(e.name) == model]
    if same:
        exact = [e for e in same if int(e.input_width) == input_size]
        entry = (exact or same)[0]
        width = input_size or int(entry.input_width)
        name = entry.name if exact else f"{architecture_name(entry.name)}_{width}"
        return name, config.project_root() / entry.descriptor, width
    close = difflib.get_close_matches(model, list(manifest["name"]), n=5, cutoff=0.5)
    hint = f"close zoo names: {', '.join(close)}" if close else f"see the names in {zoo_dir}/{zoo.MANIFEST}"
    raise ValueError(f"{model} is neither a descriptor file nor a model or architecture of the zoo ({hint})")
