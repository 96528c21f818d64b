"""Wait-time estimates: placeholder interface, replaced by the simulation estimator."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..settings import Settings
from .model import Estimate, Snapshot


@dataclass
class Estimates:
    """Estimates for one office at one moment."""

    #: For every waiting ticket, by ticket id.
    tickets: dict[str, Estimate] = field(default_factory=dict)
    #: For a ticket that would be issued now, by service id.
    new: dict[str, Estimate] = field(default_factory=dict)


class Estimator:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def estimate(self, snapshot: Snapshot) -> Estimates:
        raise NotImplementedError
