"""Score a replay's rows: how close the published waits came to the real ones.

:func:`score` turns the replay's rows into the accuracy figures of the format,
for the system and for a plain baseline, ``(ahead + 1) × mean service time /
servers``, fed the same ``ahead`` and ``servers`` the system published.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .harness import Outcome, Row

#: Congestion bands, in seconds of wait: under 15 min, 15-30, 30-60, over 60. A wait
#: on an edge belongs to the band above it (exactly 15 min is in 15-30).
BANDS = (15 * 60.0, 30 * 60.0, 60 * 60.0)


@dataclass(frozen=True)
class Accuracy:
    """How good a predictor's waits were, over the tickets that were called.

    Every figure is NaN when no ticket was called; ``coverage`` is ``None`` for a
    predictor without an interval.
    """

    scored: int
    mae: float
    rmse: float
    p90: float
    coverage: float | None
    bands: float


def band(seconds: float) -> int:
    """The congestion band of a wait: 0 under 15 min, 1 for 15-30, 2 for 30-60, 3 beyond."""
    return sum(seconds >= edge for edge in BANDS)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0-1) with linear interpolation between order statistics."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def _accuracy(rows: Iterable[Row], predict: Callable[[Row], float], interval: bool) -> Accuracy:
    pairs = [(predict(row), row.waited, row) for row in rows if row.waited is not None]
    if not pairs:
        return Accuracy(0, math.nan, math.nan, math.nan, math.nan if interval else None, math.nan)
    errors = [abs(predicted - waited) for predicted, waited, _ in pairs]
    n = len(pairs)
    coverage = sum(row.low <= waited <= row.high for _, waited, row in pairs) / n
    return Accuracy(
        scored=n,
        mae=math.fsum(errors) / n,
        rmse=math.sqrt(math.fsum(e * e for e in errors) / n),
        p90=percentile(errors, 0.9),
        coverage=coverage if interval else None,
        bands=sum(band(predicted) == band(waited) for predicted, waited, _ in pairs) / n,
    )


def score(rows: Iterable[Row]) -> Accuracy:
    """The accuracy of the system's published estimates."""
    return _accuracy(rows, lambda row: row.predicted_wait, interval=True)


def score_baseline(rows: Iterable[Row]) -> Accuracy:
    """The accuracy of the baseline ``(ahead + 1) × mean service time / servers``."""
    return _accuracy(rows, lambda row: row.baseline_wait, interval=False)


def summary(rows: Sequence[Row]) -> str:
    """A short table: outcomes, then the figures for the system and the baseline."""
    counts = Counter(row.outcome for row in rows)
    lines = [
        f"{len(rows)} tickets: "
        + ", ".join(f"{counts[outcome]} {outcome.value}" for outcome in Outcome),
        "",
        f"{'predictor':<10}{'scored':>7}{'MAE min':>9}{'RMSE min':>10}{'p90 min':>9}"
        f"{'in interval':>13}{'right band':>12}",
    ]
    for name, accuracy in (("system", score(rows)), ("baseline", score_baseline(rows))):
        coverage = "—" if accuracy.coverage is None else _percent(accuracy.coverage)
        lines.append(
            f"{name:<10}{accuracy.scored:>7}{_minutes(accuracy.mae):>9}"
            f"{_minutes(accuracy.rmse):>10}{_minutes(accuracy.p90):>9}"
            f"{coverage:>13}{_percent(accuracy.bands):>12}"
        )
    return "\n".join(lines)


def _minutes(seconds: float) -> str:
    return "—" if math.isnan(seconds) else f"{seconds / 60:.1f}"


def _percent(share: float) -> str:
    return "—" if math.isnan(share) else f"{100 * share:.1f} %"
