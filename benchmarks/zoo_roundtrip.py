"""Load every descriptor of a built zoo with keras.models.model_from_json and check its shapes.

Run by hand after `dvc repro zoo`:  python benchmarks/zoo_roundtrip.py [data/zoo/manifest.csv]
Prints one line per model that fails, then a count per family and the load time.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from perfpred import config
from perfpred.zoo import build as zoo


def main(manifest_path: Path) -> int:
    import keras

    manifest = zoo.read_manifest(manifest_path)
    failures, start = 0, time.perf_counter()
    for row in manifest.itertuples():
        keras.backend.clear_session()
        try:
            model = keras.models.model_from_json((config.project_root() / row.descriptor).read_text())
            assert tuple(model.input_shape) == (None, row.input_width, row.input_width, 3), model.input_shape
            assert row.synthetic or tuple(model.output_shape) == (None, 1000), model.output_shape
        except Exception as error:  # report every failing descriptor, not only the first
            failures += 1
            print(f"FAIL {row.name}: {type(error).__name__}: {error}")
    elapsed_s = time.perf_counter() - start
    print(manifest.groupby("family").size().to_string())
    print(f"{len(manifest) - failures}/{len(manifest)} descriptors load with the right shapes in {elapsed_s:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else config.path("zoo") / zoo.MANIFEST))
