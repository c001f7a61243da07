"""What the interleaved speed benchmarks print: a line per model and the totals of two ways of doing the same work."""

from __future__ import annotations

import statistics

import pandas as pd


def model_line(model: str, seconds: dict[str, float], same: bool, same_text: str, differ_text: str) -> str:
    """One model: the seconds of each way, and whether their results are the same."""
    timed = "  ".join(f"{way} {value:5.2f} s" for way, value in seconds.items())
    return f"{model:40s} {timed}  {same_text if same else differ_text}"


def totals(table: pd.DataFrame, ours: str, theirs: str) -> str:
    """'N models: ours S s, theirs S s (total ratio; per model median, range)' of the columns <way>_s."""
    ratios = table[f"{ours}_s"] / table[f"{theirs}_s"]
    return (f"{len(table)} models: {ours} {table[f'{ours}_s'].sum():.0f} s, {theirs} {table[f'{theirs}_s'].sum():.0f} s "
            f"(total ratio {table[f'{ours}_s'].sum() / table[f'{theirs}_s'].sum():.2f}; per model median "
            f"{statistics.median(ratios):.2f}, range {ratios.min():.2f}-{ratios.max():.2f})")
