"""The queue's Lua scripts: loaded from ``scripts/``, each with the shared library in front."""

from __future__ import annotations

from functools import cache
from pathlib import Path

SCRIPTS = Path(__file__).parent / "scripts"

#: One script per operation; ``_lib.lua`` is prepended to each.
NAMES = (
    "office_put",
    "service_put",
    "issue",
    "call_next",
    "recall",
    "no_show",
    "start",
    "finish",
    "transfer",
    "cancel",
    "counter_open",
    "counter_pause",
    "counter_close",
    "ticket_view",
    "snapshot",
    "counter_put",
    "counter_delete",
    "service_delete",
    "note",
)


@cache
def source(name: str) -> str:
    """The full text of script ``name``, library included."""
    if name not in NAMES:
        raise KeyError(f'no queue script named "{name}"')
    library = (SCRIPTS / "_lib.lua").read_text(encoding="utf-8")
    body = (SCRIPTS / f"{name}.lua").read_text(encoding="utf-8")
    return f"{library}\n-- {name}.lua\n{body}"


def _read(name: str) -> str:
    return (SCRIPTS / f"{name}.lua").read_text(encoding="utf-8")


def module_source(module: str, name: str, *, issues: bool = False) -> str:
    """The full text of another queue module's script ``{module}_{name}.lua``, with
    ``_lib.lua`` and ``{module}_lib.lua`` in front.

    With ``issues``, the script also gets ``issue.lua``'s body as a local function
    ``issue_ticket(A)``, ``A`` standing for its arguments, so that it issues a ticket
    exactly as the issue operation does, in the same atomic step.
    """
    parts = [_read("_lib"), _read(f"{module}_lib")]
    if issues:
        issue = _read("issue").replace("ARGV[", "A[")
        parts.append(f"local function issue_ticket(A)\n{issue}\nend")
    parts.append(_read(f"{module}_{name}"))
    return "\n".join(parts)
