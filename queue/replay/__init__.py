"""Replay office-day traces in virtual time, and score the published wait estimates.

The trace and its checks are in :mod:`.trace`, the replay itself in :mod:`.harness`,
the accuracy figures in :mod:`.scoring` and ``madoguchi replay`` in :mod:`.command`;
every public name is re-exported here.
"""

from __future__ import annotations

from .command import main, run, write_rows
from .harness import NO_SHOW_AFTER, Outcome, ReplayError, Row, baseline_wait, replay
from .scoring import BANDS, Accuracy, band, percentile, score, score_baseline, summary
from .trace import (
    OPENING,
    PREFIXES,
    ZONE,
    Arrival,
    End,
    Staff,
    Trace,
    TraceError,
    TraceService,
    Truth,
    load_trace,
    parse_trace,
)

__all__ = [
    "BANDS",
    "NO_SHOW_AFTER",
    "OPENING",
    "PREFIXES",
    "ZONE",
    "Accuracy",
    "Arrival",
    "End",
    "Outcome",
    "ReplayError",
    "Row",
    "Staff",
    "Trace",
    "TraceError",
    "TraceService",
    "Truth",
    "band",
    "baseline_wait",
    "load_trace",
    "main",
    "parse_trace",
    "percentile",
    "replay",
    "run",
    "score",
    "score_baseline",
    "summary",
    "write_rows",
]
