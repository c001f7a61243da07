"""DVC outputs of the train stage, for `dvc metrics show`, `dvc plots show` and a reader of reports/.

    metrics/champions/<target>-<metric>.json    the champion's few figures (`dvc metrics show`: one short row each)
    metrics/algorithms/<target>-<metric>.json   every algorithm's figures (`dvc metrics show <file>`, or --json)
    plots/predicted/, plots/mape/                CSV data of DVC's Vega plots (`dvc plots show`, needs a CDN)
    plots/images/<target>-<metric>.png           the same as PNG images, for a machine without internet
    reports/summary.md                           the seed Table 1 and every algorithm's figures
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from perfpred import config
from perfpred.model.domains import DOMAINS
from perfpred.serve import registry

#: The champion's figures in metrics/champions/ (all of them are in metrics/algorithms/).
CHAMPION_KEYS = ("accuracy_mean", "mape_mean", "mape_std", "mape_unseen_family", "coverage_90", "seeds", "version")
#: Columns of reports/summary.md, as in the seed document's Table 1 (time = latency, RAM = memory).
TABLE_METRICS = (("latency", "Time"), ("memory", "RAM"), ("power", "Power"))


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.integer | np.floating):
        return value.item()
    return value


def record(target: str, metric: str, algorithm: str, evaluation, unseen_weight: float = 0.5) -> None:
    """Merge one algorithm's results into the (target, metric) metrics files, its plots and the summary."""
    metrics_dir, plots_dir = config.path("metrics"), config.path("plots")
    details, champions = metrics_dir / "algorithms", metrics_dir / "champions"
    predictor, result, table = evaluation.predictor, evaluation.sweep, evaluation.table
    measured = table[predictor.column].to_numpy("float64")
    held_out = pd.Series(result.predicted).groupby(result.rows).median()
    points = pd.DataFrame({
        "model": table["model"].astype(str), "input_width": table["input_width"], "measured": measured,
        "predicted": held_out.reindex(range(len(table))).to_numpy(), "predicted_unseen_family": evaluation.unseen_predicted,
    })
    with registry.locked("outputs"):
        path = details / f"{target}-{metric}.json"
        merged = json.loads(path.read_text()) if path.exists() else {}
        merged.setdefault("algorithms", {})[algorithm] = {k: _clean(v) for k, v in evaluation.metrics.items()}
        candidates = {a: {k: "nan" if v is None else v for k, v in m.items()} for a, m in merged["algorithms"].items()}
        merged["champion"] = registry.best_candidate(candidates, unseen_weight) or algorithm  # the registry's rule
        merged.update(target=target, metric=metric, rows=len(table), features=predictor.features)
        details.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
        champion = merged["algorithms"][merged["champion"]]
        compact = {"champion": merged["champion"], "rows": len(table), **{k: champion.get(k) for k in CHAMPION_KEYS}}
        champions.mkdir(parents=True, exist_ok=True)
        (champions / f"{target}-{metric}.json").write_text(json.dumps(compact, indent=2) + "\n")
        (plots_dir / "predicted").mkdir(parents=True, exist_ok=True)
        points.to_csv(plots_dir / "predicted" / f"{target}-{metric}-{algorithm}.csv", index=False)
        per_algorithm = pd.DataFrame([
            {"algorithm": a, "mape_mean": m.get("mape_mean"), "mape_unseen_family": m.get("mape_unseen_family")}
            for a, m in sorted(merged["algorithms"].items())
        ])
        (plots_dir / "mape").mkdir(parents=True, exist_ok=True)
        per_algorithm.to_csv(plots_dir / "mape" / f"{target}-{metric}.csv", index=False)
        champion_points = pd.read_csv(plots_dir / "predicted" / f"{target}-{metric}-{merged['champion']}.csv")
        write_image(plots_dir / "images" / f"{target}-{metric}.png", f"{target} {metric}", champion_points,
                    per_algorithm, merged["champion"], predictor.column)
        write_report(details, config.path("reports") / "summary.md")


def write_image(path: Path, title: str, points: pd.DataFrame, per_algorithm: pd.DataFrame, champion: str,
                column: str) -> None:
    """One PNG per (target, metric): the champion's held-out predictions against the measurements, and every
    algorithm's MAPE (DVC shows it as an image plot; it needs no CDN, unlike the Vega ones)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (scatter, bars) = plt.subplots(1, 2, figsize=(10, 4.5))
    scatter.scatter(points["measured"], points["predicted"], s=4, alpha=0.4, label="held out, random 80/20 splits")
    scatter.scatter(points["measured"], points["predicted_unseen_family"], s=6, marker="x", alpha=0.5,
                    label="family never seen (GroupKFold)")
    low, high = points["measured"].min(), points["measured"].max()
    scatter.plot([low, high], [low, high], color="black", linewidth=0.8)
    scatter.set(xscale="log", yscale="log", xlabel=f"measured {column}", ylabel=f"predicted {column}",
                title=f"{title}: champion {champion}")
    scatter.legend(fontsize=7)
    ordered = per_algorithm.sort_values("algorithm", ascending=False)
    rows = np.arange(len(ordered))
    bars.barh(rows - 0.2, ordered["mape_mean"], height=0.4, label="mean over seeds")
    bars.barh(rows + 0.2, ordered["mape_unseen_family"], height=0.4, label="unseen family")
    bars.set(yticks=rows, yticklabels=ordered["algorithm"], xlabel="MAPE (%)", title=f"{title}: every algorithm")
    bars.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(figure)


def published_figures() -> dict[str, dict[str, list[float]]]:
    """The published per-domain MAPE (conf/published/jetson-domains.yaml): target -> metric -> [sizes, architectures, synthetic]."""
    return config.load_params()["published"]["mape_pct"]


def _domain_figure(entry: dict, domain: str) -> str:
    """A domain's mean MAPE over the domain seeds, with its standard deviation over them where there is one."""
    mean, std = entry.get(f"mape_{domain}"), entry.get(f"mape_{domain}_std")
    if mean is None:
        return "-"
    return f"{mean:.1f}" + (f" ± {std:.1f}" if std is not None and np.isfinite(std) else "")


def _domain_cell(entry: dict | None, published: list[float] | None) -> str:
    if not entry:
        return "| - "
    ours = " / ".join(_domain_figure(entry, d) for d in DOMAINS)
    return f"| {ours}" + (f" ({' / '.join(f'{p:.1f}' for p in published)})" if published else "") + " "


def domain_table(by_target: dict[str, dict[str, dict]]) -> list[str]:
    """Markdown lines: per target, the champion's MAPE on domains 1 / 2 / 3 of each metric, the published figures beside."""
    published = published_figures()
    lines = ["## Test domains (MAPE %, champion's / published)", "",
             "Domains 1 / 2 / 3: input sizes never seen / architectures never seen (family kept) / synthetic CNNs "
             "never seen (perfpred.model.domains): mean ± standard deviation over `train.domain_seeds` seeds, each "
             "holding out its own networks (a synthetic domain of a few dozen networks moves by several points from one "
             "seed to the next). In brackets the published "
             f"best-of-five ({config.group_option('published', 'jetson-domains')['citation']}).", "",
             "| Target |" + "".join(f" {label}: algorithm | {label}: 1 / 2 / 3 |" for _, label in TABLE_METRICS),
             "|---|" + "---|---|" * len(TABLE_METRICS)]
    for target, per_metric in sorted(by_target.items()):
        row = f"| {target} "
        for metric, _ in TABLE_METRICS:
            result = per_metric.get(metric)
            champion = result["champion"] if result else None
            row += f"| {champion or '-'} " + _domain_cell(result["algorithms"].get(champion) if result else None,
                                                         published.get(target, {}).get(metric))
        lines.append(row + "|")
    return lines + [""]


def _cell(entry: dict | None, algorithm: str | None) -> str:
    if not entry:
        return "| - | - | - "
    std = entry.get("mape_std") or 0.0
    unseen = entry.get("mape_unseen_family")
    unseen_text = f"{unseen:.1f}" if unseen is not None else "-"
    return f"| {algorithm} | {entry['accuracy_mean']:.1f} +- {std:.1f} (best {entry['accuracy_best']:.1f}) | {unseen_text} "


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f}"


def _mape(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def write_report(details: Path, report: Path) -> None:
    """reports/summary.md: per target, the champion of each metric with its accuracy, as the seed Table 1."""
    files = sorted(details.glob("*.json"))
    results = [json.loads(p.read_text()) for p in files]
    by_target: dict[str, dict[str, dict]] = {}
    for result in results:
        by_target.setdefault(result["target"], {})[result["metric"]] = result
    header = "| Target | Inputs |" + "".join(f" {label}: algorithm | {label}: accuracy % | {label}: unseen family MAPE % |"
                                             for _, label in TABLE_METRICS)
    lines = [
        "# Predictor accuracy (accuracy = 100 - MAPE)",
        "",
        "Accuracy: mean +- std over random 80/20 seeds (best seed in brackets, a biased figure on its own); "
        "unseen family: the MAPE of leave-family-out (GroupKFold on `family`), a MAPE because a family never seen can be "
        "missed by more than 100 %. Algorithm: the registry's champion. "
        "Made by the train stage (`dvc repro train`, i.e. `perfpred train --pipeline`). Synthetic from real "
        "(random CNNs predicted by a model fitted on real ones) is a MAPE, not an accuracy: it can exceed 100 %.",
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
    lines += ["", *domain_table(by_target)]
    lines += ["## Every algorithm", "",
              "| Target | Metric | Rows | Algorithm | Accuracy mean +- std | Median | p5 / p95 | Best (seed) | Worst "
              "| Unseen family: MAPE % | Synthetic from real: MAPE % | Coverage 90 % | Domains 1 / 2 / 3 MAPE | Coverage 90 % on 1 / 2 / 3 "
              "| Champion score |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for result in sorted(results, key=lambda r: (r["target"], r["metric"])):
        for algorithm, m in sorted(result["algorithms"].items()):
            unseen, synthetic = m.get("mape_unseen_family"), m.get("mape_synthetic_from_real")
            lines.append(
                f"| {result['target']} | {result['metric']} | {result['rows']} | {algorithm} | "
                f"{m['accuracy_mean']:.2f} +- {m['mape_std']:.2f} | {100 - m['mape_median']:.2f} | "
                f"{100 - m['mape_p95']:.2f} / {100 - m['mape_p5']:.2f} | {m['accuracy_best']:.2f} ({m['best_seed']}) | "
                f"{100 - m['mape_worst']:.2f} | {'-' if unseen is None else f'{unseen:.2f}'} | "
                f"{'-' if synthetic is None else f'{synthetic:.1f}'} | "
                f"{_percent(m.get('coverage_90'))} |"
                f" {' / '.join(_mape(m.get(f'mape_{d}')) for d in DOMAINS)} |"
                f" {' / '.join(_percent(m.get(f'coverage_90_{d}')) for d in DOMAINS)} | {_mape(m.get('champion_score'))} |"
            )
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines) + "\n")
