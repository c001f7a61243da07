"""DVC outputs of training: metrics/<target>-<metric>.json, plots/ data and reports/summary.md (the seed Table 1)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from perfpred import config
from perfpred.serve import registry

#: Columns of reports/summary.md, as in the seed document's Table 1 (time = latency, RAM = memory).
TABLE_METRICS = (("latency", "Time"), ("memory", "RAM"), ("power", "Power"))


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.integer | np.floating):
        return value.item()
    return value


def record(target: str, metric: str, algorithm: str, evaluation, unseen_weight: float = 0.5) -> None:
    """Merge one algorithm's results into the (target, metric) metrics file, its plot data and the summary."""
    metrics_dir, plots_dir = config.path("metrics"), config.path("plots")
    predictor, result, table = evaluation.predictor, evaluation.sweep, evaluation.table
    measured = table[predictor.column].to_numpy("float64")
    held_out = pd.Series(result.predicted).groupby(result.rows).median()
    points = pd.DataFrame({
        "model": table["model"].astype(str), "input_width": table["input_width"], "measured": measured,
        "predicted": held_out.reindex(range(len(table))).to_numpy(), "predicted_unseen_family": evaluation.unseen_predicted,
    })
    with registry.locked("outputs"):
        path = metrics_dir / f"{target}-{metric}.json"
        merged = json.loads(path.read_text()) if path.exists() else {}
        merged.setdefault("algorithms", {})[algorithm] = {k: _clean(v) for k, v in evaluation.metrics.items()}
        candidates = {a: {k: "nan" if v is None else v for k, v in m.items()} for a, m in merged["algorithms"].items()}
        merged["champion"] = registry.best_candidate(candidates, unseen_weight) or algorithm  # the registry's rule
        merged.update(target=target, metric=metric, rows=len(table), features=predictor.features)
        metrics_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
        (plots_dir / "predicted").mkdir(parents=True, exist_ok=True)
        points.to_csv(plots_dir / "predicted" / f"{target}-{metric}-{algorithm}.csv", index=False)
        per_algorithm = pd.DataFrame([
            {"algorithm": a, "mape_mean": m.get("mape_mean"), "mape_unseen_family": m.get("mape_unseen_family")}
            for a, m in sorted(merged["algorithms"].items())
        ])
        (plots_dir / "mape").mkdir(parents=True, exist_ok=True)
        per_algorithm.to_csv(plots_dir / "mape" / f"{target}-{metric}.csv", index=False)
        write_report(metrics_dir, config.path("reports") / "summary.md")


def _cell(entry: dict | None, algorithm: str | None) -> str:
    if not entry:
        return "| - | - | - "
    std = entry.get("mape_std") or 0.0
    unseen = entry.get("mape_unseen_family")
    unseen_text = f"{100 - unseen:.1f}" if unseen is not None else "-"
    return f"| {algorithm} | {entry['accuracy_mean']:.1f} +- {std:.1f} (best {entry['accuracy_best']:.1f}) | {unseen_text} "


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f}"


def write_report(metrics_dir: Path, report: Path) -> None:
    """reports/summary.md: per target, the champion of each metric with its accuracy, as the seed Table 1."""
    files = sorted(metrics_dir.glob("*.json"))
    results = [json.loads(p.read_text()) for p in files]
    by_target: dict[str, dict[str, dict]] = {}
    for result in results:
        by_target.setdefault(result["target"], {})[result["metric"]] = result
    header = "| Target | Inputs |" + "".join(f" {label}: algorithm | {label}: accuracy % | {label}: unseen family % |"
                                             for _, label in TABLE_METRICS)
    lines = [
        "# Predictor accuracy (accuracy = 100 - MAPE)",
        "",
        "Accuracy: mean +- std over random 80/20 seeds (best seed in brackets, a biased figure on its own); "
        "unseen family: leave-family-out (GroupKFold on `family`). Algorithm: the registry's champion. "
        "Made by `perfpred train` / `dvc repro`.",
        "",
        header,
        "|" + "---|" * (2 + 3 * len(TABLE_METRICS)),
    ]
    for target, per_metric in sorted(by_target.items()):
        inputs = max(r["rows"] for r in per_metric.values())
        row = f"| {target} | {inputs} "
        for metric, _ in TABLE_METRICS:
            result = per_metric.get(metric)
            champion = result["champion"] if result else None
            row += _cell(result["algorithms"].get(champion) if result else None, champion)
        lines.append(row + "|")
    lines += ["", "## Every algorithm", "",
              "| Target | Metric | Rows | Algorithm | Accuracy mean +- std | Median | p5 / p95 | Best (seed) | Worst "
              "| Unseen family | Synthetic from real | Coverage 90 % |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for result in sorted(results, key=lambda r: (r["target"], r["metric"])):
        for algorithm, m in sorted(result["algorithms"].items()):
            unseen, synthetic = m.get("mape_unseen_family"), m.get("mape_synthetic_from_real")
            lines.append(
                f"| {result['target']} | {result['metric']} | {result['rows']} | {algorithm} | "
                f"{m['accuracy_mean']:.2f} +- {m['mape_std']:.2f} | {100 - m['mape_median']:.2f} | "
                f"{100 - m['mape_p95']:.2f} / {100 - m['mape_p5']:.2f} | {m['accuracy_best']:.2f} ({m['best_seed']}) | "
                f"{100 - m['mape_worst']:.2f} | {'-' if unseen is None else f'{100 - unseen:.2f}'} | "
                f"{'-' if synthetic is None else f'{100 - synthetic:.2f}'} | "
                f"{_percent(m.get('coverage_90'))} |"
            )
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines) + "\n")
