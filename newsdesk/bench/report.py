"""The benchmark's one table: rows of measures, each with its target (if it has one) and whether it is met."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Row:
    """One measure. `value` is the headline figure (in `unit`); `detail` holds the others (p95, ...)."""

    part: str
    measure: str
    value: float
    unit: str
    detail: str = ""
    target: str = ""  # "" when the issue sets no target for this measure
    met: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # machine-readable figures behind detail


@dataclass
class Report:
    rows: list[Row]
    context: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps({"context": self.context, "rows": [asdict(row) for row in self.rows]}, indent=2)

    def to_table(self) -> str:
        header = ("part", "measure", "value", "detail", "target", "met")
        lines = [
            (
                row.part,
                row.measure,
                f"{format_number(row.value)} {row.unit}",
                row.detail,
                row.target,
                {True: "yes", False: "NO", None: ""}[row.met],
            )
            for row in self.rows
        ]
        widths = [max(len(str(cells[i])) for cells in [header, *lines]) for i in range(len(header))]
        out = [" | ".join(str(cell).ljust(width) for cell, width in zip(header, widths, strict=True))]
        out.append("-|-".join("-" * width for width in widths))
        out += [" | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in lines]
        notes = [f"{key}: {value}" for key, value in self.context.items()]
        return "\n".join([*notes, "", *(line.rstrip() for line in out)])


def format_number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def percentile(values: Sequence[float], share: float) -> float:
    """The `share` (0..100) percentile by linear interpolation, as numpy's default."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * share / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, p95, p99 and mean, rounded for the report."""
    return {
        "p50": round(statistics.median(values), 2),
        "p95": round(percentile(values, 95), 2),
        "p99": round(percentile(values, 99), 2),
        "mean": round(statistics.fmean(values), 2),
        "count": len(values),
    }
