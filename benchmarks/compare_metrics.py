"""Compare metrics/ of the working tree with those of a git revision: largest differences per (target, metric).

Used to check that a refactor left the figures as they were: `python benchmarks/compare_metrics.py HEAD~1`.
Registry versions are ignored (they count registrations in the store, not results).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

IGNORED = {"version", "best_seed"}


def flatten(tree: dict, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict, keyed by their dotted path."""
    leaves: dict[str, float] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            leaves.update(flatten(value, path + "."))
        elif isinstance(value, int | float) and not isinstance(value, bool) and key not in IGNORED:
            leaves[path] = float(value)
    return leaves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("revision", help="git revision to compare with, e.g. HEAD~1")
    parser.add_argument("--metrics", default="metrics", help="metrics folder (default metrics)")
    args = parser.parse_args()
    for path in sorted(Path(args.metrics).rglob("*.json")):  # metrics/champions/, metrics/algorithms/
        try:
            old_text = subprocess.run(["git", "show", f"{args.revision}:{path.as_posix()}"], check=True,
                                      capture_output=True, text=True).stdout
        except subprocess.CalledProcessError:
            print(f"{path.relative_to(args.metrics).as_posix():45s} new file")
            continue
        old, new = flatten(json.loads(old_text)), flatten(json.loads(path.read_text()))
        common = sorted(set(old) & set(new))
        mape = [k for k in common if k.split(".")[-1] == "mape_mean"]
        worst = max(common, key=lambda k: abs(new[k] - old[k]), default=None)
        worst_mape = max(mape, key=lambda k: abs(new[k] - old[k]), default=None)
        name = path.relative_to(args.metrics).with_suffix("").as_posix()
        if worst is None or (new[worst] == old[worst] and set(old) == set(new)):
            print(f"{name:45s} identical")
            continue
        print(f"{name:45s} largest change {worst}: {old[worst]:.6g} -> {new[worst]:.6g}; "
              f"mape_mean {worst_mape}: {old[worst_mape]:.6g} -> {new[worst_mape]:.6g}; "
              f"keys only before {len(set(old) - set(new))}, only now {len(set(new) - set(old))}")


if __name__ == "__main__":
    main()
