"""Timing and reporting: warm-up, interleaved repetitions, medians with their range, and the figures table."""

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass
class Spread:
    """The median of repeated measurements and their range."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> "Spread":
        if not values:
            raise ValueError("`values` must hold at least one measurement, got none.")
        return cls(statistics.median(values), min(values), max(values))


def synchronize(device: torch.device) -> None:
    """Waits for queued device work, so that a wall-clock reading covers it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    cases: dict[str, Callable[[], object]], repetitions: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per call of each case, one reading per repetition.

    Every case is called `warmup` times first (lazy allocations, optimizer state, kernel selection), then the cases
    take turns, one call each per repetition, in an order rotated every repetition: slow drifts of the machine (other
    jobs, thermal throttling) then hit every case alike instead of whichever ran last.
    """
    if repetitions < 1 or warmup < 0:
        raise ValueError(f"`repetitions` must be >= 1 and `warmup` >= 0, got {repetitions} and {warmup}.")
    for case in cases.values():
        for _ in range(warmup):
            case()
    synchronize(device)
    names = list(cases)
    readings: dict[str, list[float]] = {name: [] for name in names}
    for repetition in range(repetitions):
        shift = repetition % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            cases[name]()
            synchronize(device)
            readings[name].append(time.perf_counter() - start)
    return readings


def ratios(readings: dict[str, list[float]], baseline: str, speedup: bool = False) -> dict[str, Spread]:
    """Each case's time over the baseline's (or, with `speedup`, the baseline's over the case's), taken within each
    repetition so that both saw the same machine state."""
    return {
        name: Spread.of([base / value if speedup else value / base for value, base in zip(values, readings[baseline])])
        for name, values in readings.items()
        if name != baseline
    }


@dataclass
class Figure:
    group: str
    name: str
    value: float
    unit: str
    low: float | None = None
    high: float | None = None
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.group}.{self.name}"


@dataclass
class Report:
    """Every figure of a run, printed as it comes and written as one JSON object (one key per figure)."""

    settings: dict[str, object]
    figures: list[Figure] = field(default_factory=list)

    def add(
        self, group: str, name: str, value: float | Spread, unit: str, note: str = "", scale: float = 1.0
    ) -> None:
        """Records a figure; a `Spread` keeps its range. `scale` converts the value (and range) to `unit`."""
        if isinstance(value, Spread):
            figure = Figure(group, name, value.median * scale, unit, value.low * scale, value.high * scale, note)
        else:
            figure = Figure(group, name, value * scale, unit, note=note)
        self.figures.append(figure)
        print(f"  {format_figure(figure):<48} {figure.key}" + (f"  ({note})" if note else ""), flush=True)

    def get(self, key: str) -> Figure | None:
        """The figure recorded under `key` (group.name), if any."""
        return next((figure for figure in self.figures if figure.key == key), None)

    def table(self) -> str:
        """The figures as a Markdown table."""
        lines = ["| group | figure | value | range (min–max) | note |", "| --- | --- | --- | --- | --- |"]
        for figure in self.figures:
            spread = f"{figure.low:.3g}–{figure.high:.3g}" if figure.low is not None else ""
            lines.append(
                f"| {figure.group} | {figure.name} | {figure.value:.3g} {figure.unit} | {spread} | {figure.note} |"
            )
        return "\n".join(lines)

    def write_json(self, path: Path) -> None:
        figures = {
            figure.key: {
                "value": figure.value,
                "unit": figure.unit,
                **({"min": figure.low, "max": figure.high} if figure.low is not None else {}),
                **({"note": figure.note} if figure.note else {}),
            }
            for figure in self.figures
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"settings": self.settings, "figures": figures}, indent=2) + "\n")


def format_figure(figure: Figure) -> str:
    text = f"{figure.value:.3g} {figure.unit}"
    if figure.low is not None:
        text += f" [{figure.low:.3g}–{figure.high:.3g}]"
    return text
