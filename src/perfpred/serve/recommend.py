"""`perfpred recommend`: rank the targets and toolchains whose predicted latency, memory and power meet the requirements."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass

import pandas as pd

from perfpred.serve import predict

#: requirement option -> (prediction column, unit)
REQUIREMENT_OPTIONS: dict[str, tuple[str, str]] = {
    "max_latency_ms": ("latency_ms", "ms"),
    "max_memory_mb": ("memory_mb", "MB"),
    "max_power_mw": ("power_mw", "mW"),
}
REQUIREMENT_COLUMNS: tuple[str, ...] = tuple(column for column, _ in REQUIREMENT_OPTIONS.values())


@dataclass(frozen=True)
class Check:
    """One requirement on one target: the point prediction against the limit, and whether its interval agrees."""

    column: str
    limit: float
    value: float
    low: float
    high: float

    @property
    def known(self) -> bool:
        """Whether the target has a prediction for this column."""
        return not math.isnan(self.value)

    @property
    def meets(self) -> bool:
        """The point prediction is within the limit."""
        return self.known and self.value <= self.limit

    @property
    def uncertain(self) -> bool:
        """The interval straddles the limit: the verdict could go either way."""
        return self.known and self.low <= self.limit < self.high

    def describe(self) -> str:
        """'latency_ms 42.1 > 30 (+12.1, +40%), uncertain' and the like."""
        if not self.known:
            return f"{self.column}: no predictor for this target"
        excess = self.value - self.limit
        relation = ">" if excess > 0 else "<="
        text = f"{self.column} {self.value:.4g} {relation} {self.limit:.4g} ({excess:+.4g}, {excess / self.limit:+.0%})"
        return text + (f", uncertain: interval [{self.low:.4g}, {self.high:.4g}]" if self.uncertain else "")


def checks(row: pd.Series, requirements: dict[str, float]) -> list[Check]:
    """The checks of one prediction row against every requirement (column -> maximum)."""
    result = []
    for column, limit in requirements.items():
        value = _number(row.get(column))
        low = _number(row.get(f"{column}_low"), default=value)
        high = _number(row.get(f"{column}_high"), default=value)
        result.append(Check(column, float(limit), value, low, high))
    return result


def recommend(predictions: pd.DataFrame, requirements: dict[str, float], rank_by: str = "latency_ms") -> pd.DataFrame:
    """Rank prediction rows against requirements (column -> maximum), best first.

    Rows whose point predictions meet every requirement come first, ranked by `rank_by` (lower is
    better); the others follow, closest to meeting first. Added columns: `rank` (1, 2, ... for rows
    that meet, NA otherwise), `meets`, `uncertain` (an interval straddles a limit), `verdict`
    ('meets', 'meets?', 'fails?', 'fails') and `reasons` (the failing or uncertain requirements).
    """
    unknown = [column for column in requirements if column not in REQUIREMENT_COLUMNS]
    if unknown:
        raise ValueError(f"unknown requirement columns {unknown}: known are {', '.join(REQUIREMENT_COLUMNS)}")
    if not requirements:
        raise ValueError("no requirement given: pass --max-latency-ms, --max-memory-mb or --max-power-mw")
    rows = []
    for _, row in predictions.iterrows():
        row_checks = checks(row, requirements)
        meets = all(check.meets for check in row_checks)
        uncertain = any(check.uncertain for check in row_checks)
        # A failure is certain when some requirement fails even at the low end of its interval.
        certain_failure = any(check.known and check.low > check.limit for check in row_checks)
        if meets:
            verdict = "meets?" if uncertain else "meets"
        else:
            verdict = "fails" if certain_failure or not uncertain else "fails?"
        shown = [check for check in row_checks if not check.meets or check.uncertain]
        rows.append(
            {
                "meets": meets,
                "uncertain": uncertain,
                "verdict": verdict,
                "reasons": "; ".join(check.describe() for check in shown),
                "_excess": sum(max(0.0, check.value / check.limit - 1) if check.known else math.inf for check in row_checks),
            }
        )
    verdicts = pd.DataFrame(rows, index=predictions.index)
    table = pd.concat([predictions, verdicts], axis=1)
    sort_value = table[rank_by] if rank_by in table.columns else pd.Series(math.nan, index=table.index)
    table["_sort"] = sort_value.where(table["meets"], table["_excess"])
    table = table.sort_values(["meets", "_sort"], ascending=[False, True], kind="stable").reset_index(drop=True)
    met = int(table["meets"].sum())
    table["rank"] = pd.array(list(range(1, met + 1)) + [pd.NA] * (len(table) - met), dtype="Int64")
    return table.drop(columns=["_excess", "_sort"])


def recommend_model(
    model,
    max_latency_ms: float | None = None,
    max_memory_mb: float | None = None,
    max_power_mw: float | None = None,
    rank_by: str = "latency_ms",
    **predict_options,
) -> pd.DataFrame:
    """Targets ranked for one CNN (MODEL as for predict_model) against latency, memory and power limits, best first."""
    limits = {"latency_ms": max_latency_ms, "memory_mb": max_memory_mb, "power_mw": max_power_mw}
    requirements = {column: float(limit) for column, limit in limits.items() if limit is not None}
    return recommend(predict.predict_model(model, **predict_options), requirements, rank_by=rank_by)


def requirements_from_args(args: argparse.Namespace) -> dict[str, float]:
    """Requirement column -> maximum from the command-line options that were given."""
    requirements = {}
    for option, (column, unit) in REQUIREMENT_OPTIONS.items():
        value = getattr(args, option, None)
        if value is None:
            continue
        if not value > 0:
            raise ValueError(f"--{option.replace('_', '-')} must be a positive number of {unit}, got {value}")
        requirements[column] = float(value)
    return requirements


def format_recommendations(table: pd.DataFrame) -> str:
    """The ranking as text: the targets that meet the requirements, then the others with their reasons."""
    lines = []
    met = table[table["meets"]]
    if met.empty:
        lines.append("No target meets the requirements.")
    else:
        lines.append("Targets that meet the requirements, best first:")
        lines.append(predict.format_table(met, leading=("rank", "verdict")))
        for _, row in met[met["uncertain"]].iterrows():
            lines.append(f"  {row['target']}: meets?: {row['reasons']}")
    failing = table[~table["meets"]]
    if not failing.empty:
        lines.append("")
        lines.append("Targets that do not meet them:")
        for _, row in failing.iterrows():
            mark = "" if predict.domain_text(row) in ("yes", "?") else f" [in training domain: {predict.domain_text(row)}]"
            lines.append(f"  {row['target']} ({row.get('toolchain', '')}): {row['verdict']}: {row['reasons']}{mark}")
    if table["uncertain"].any():
        lines.append("")
        lines.append("'?': the prediction interval straddles a limit, so the verdict could go either way.")
    if "in_domain" in table.columns and (table["in_domain"] == False).any():  # noqa: E712 (None is unknown, not out)
        lines.append(predict.OUTSIDE_NOTE)
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `perfpred recommend`: those of `perfpred predict` plus the requirements."""
    predict.add_arguments(parser)
    parser.add_argument("--max-latency-ms", type=float, help="latency limit of one inference, in ms")
    parser.add_argument("--max-memory-mb", type=float, help="peak memory limit, in MB")
    parser.add_argument("--max-power-mw", type=float, help="mean power limit, in mW (targets without power fail it)")
    parser.add_argument(
        "--rank-by", default="latency_ms", choices=REQUIREMENT_COLUMNS, help="what ranks the targets that meet them"
    )


def run(args: argparse.Namespace) -> int:
    """Predict MODEL on every target, then rank the targets against the requirements."""
    requirements = requirements_from_args(args)
    if not requirements:
        raise ValueError("no requirement given: pass --max-latency-ms, --max-memory-mb or --max-power-mw")
    predictions = predict.predict_from_args(args)
    table = recommend(predictions, requirements, rank_by=args.rank_by)
    if args.json:
        print(json.dumps(predict.json_records(table), indent=2))
    else:
        print(format_recommendations(table))
    return 0


def _number(value, default: float = math.nan) -> float:
    """A float from a table cell; None and NA become `default`."""
    if value is None or value is pd.NA:
        return default
    number = float(value)
    return default if math.isnan(number) else number
