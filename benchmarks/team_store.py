"""8 engineers train at once into one store: PostgreSQL behind `mlflow server` vs SQLite (behind a server, and shared directly).

    PYTHONPATH=src python benchmarks/team_store.py [--stores postgres sqlite-server sqlite-file]

Each trainer is `perfpred train store=team` in its own checkout (no shared file lock between them, as on
several machines), one (metric, algorithm) of the Jetson Nano each. Prints, per store: wall time, failed jobs,
lost and duplicated runs, missing and duplicated registry versions, champions and wrong champions
(`tests/parallel_trainers.py` does the audit; tests/test_team_store.py asserts it for PostgreSQL).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import parallel_trainers  # noqa: E402
import servers  # noqa: E402

STORES = ("postgres", "sqlite-server", "sqlite-file")


@contextlib.contextmanager
def store(kind: str, folder: Path):
    """The tracking URI of one kind of store, running for the block."""
    if kind == "postgres":
        with servers.postgres() as database, servers.mlflow_server(folder, backend_uri=database) as url:
            yield url
    elif kind == "sqlite-server":
        with servers.mlflow_server(folder) as url:
            yield url
    else:  # every trainer opens the same SQLite file; created once first (concurrent creation is a known race)
        from perfpred.serve import registry

        uri = f"sqlite:///{folder / 'shared.db'}"
        registry.ensure_store(uri)
        yield uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", nargs="*", default=list(STORES), choices=STORES)
    args = parser.parse_args()
    for kind in args.stores:
        with tempfile.TemporaryDirectory(prefix=f"team-{kind}-") as tmp:
            folder = Path(tmp)
            projects = parallel_trainers.make_checkouts(folder, len(parallel_trainers.JOBS))
            with store(kind, folder) as uri:
                started = time.perf_counter()
                finished = parallel_trainers.train_in_parallel(projects, uri)
                seconds = time.perf_counter() - started
                report = parallel_trainers.audit(uri)
            failed = [f for f in finished if f.returncode != 0]
            print(f"{kind:13s} {seconds:6.1f} s  failed jobs {len(failed)}  " + "  ".join(f"{k} {v}" for k, v in report.items()), flush=True)
            for job in failed:
                print(f"    {' '.join(job.args[-9:-5])}: {job.stderr.strip().splitlines()[-1][:200]}")


if __name__ == "__main__":
    main()
