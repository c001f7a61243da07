"""Several engineers training into one store at once: each has a checkout (a project folder) and runs
`perfpred train store=team`; then an audit of what the store holds."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import trained_store

#: (metric, algorithm) of the parallel jobs: two registered models, four versions each
JOBS = [(metric, algorithm) for metric in ("latency", "memory") for algorithm in ("poly", "svr", "rf", "xgb")]
TARGET = "jetson-nano"


def make_checkouts(folder: Path, count: int) -> list[Path]:
    """`count` project folders with the same Nano subset (as many engineers' clones)."""
    projects = []
    for index in range(count):
        project = folder / f"engineer-{index}"
        project.mkdir(parents=True)
        trained_store.make_project(project, {TARGET: "nano"}, train_fraction=0.3)
        projects.append(project)
    return projects


def train_in_parallel(projects: list[Path], store_url: str, jobs=JOBS) -> list[subprocess.CompletedProcess]:
    """Start one `perfpred train store=team` per job, each in its own checkout, all at once; wait for all."""
    running = []
    for project, (metric, algorithm) in zip(projects, jobs, strict=True):
        env = trained_store.environment(project) | {"PERFPRED_TEAM_STORE": store_url}
        command = [sys.executable, "-m", "perfpred.cli", "train", "store=team", f"target={TARGET}", f"metric={metric}",
                   f"algorithm={algorithm}", *trained_store.TRAIN_SETTINGS, "train.n_jobs=1", "train.outputs=false"]
        running.append(subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    finished = []
    for process in running:
        out, err = process.communicate(timeout=900)
        finished.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return finished


def audit(store_url: str, jobs=JOBS, unseen_weight: float = 0.5) -> dict:
    """What the store holds after the jobs: lost and duplicated runs, missing and duplicated versions, champions."""
    from perfpred.serve import registry

    client = registry.client(store_url)
    experiment = client.get_experiment_by_name(TARGET)
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    run_keys = [(r.data.tags.get("metric"), r.data.tags.get("algorithm")) for r in runs if r.info.status == "FINISHED"]
    report = {"jobs": len(jobs), "runs_finished": len(run_keys),
              "runs_lost": sum(1 for job in jobs if job not in run_keys),
              "runs_duplicated": len(run_keys) - len(set(run_keys)),
              "versions_missing": 0, "versions_duplicated": 0, "version_numbers_gapped": 0,
              "champions": 0, "champions_wrong": 0}
    for metric in sorted({m for m, _ in jobs}):
        expected = sorted(a for m, a in jobs if m == metric)
        name = registry.model_name(TARGET, metric)
        versions = client.search_model_versions(f"name='{name}'") if client.search_registered_models(f"name='{name}'") else []
        algorithms = sorted(v.tags.get("algorithm", "?") for v in versions)
        report["versions_missing"] += len(set(expected) - set(algorithms))
        report["versions_duplicated"] += len(algorithms) - len(set(algorithms))
        numbers = sorted(int(v.version) for v in versions)
        report["version_numbers_gapped"] += int(numbers != list(range(1, len(numbers) + 1)))
        if not versions:
            continue
        scores = {int(v.version): registry.champion_score(v.tags, unseen_weight) for v in versions}
        best = min((s, -n) for n, s in scores.items() if not math.isnan(s))
        aliases = client.get_registered_model(name).aliases or {}
        if registry.CHAMPION in aliases:
            report["champions"] += 1
            report["champions_wrong"] += int(int(aliases[registry.CHAMPION]) != -best[1])
    return report
