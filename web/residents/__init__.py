"""The residents' side on their phones: an office's page, a ticket's live page, its poster.

See :mod:`.pages` for the routes, :mod:`.watch` for the live views and :mod:`.guard`
for the cookie, the form tokens and the limits on tickets taken on the web.
"""

from __future__ import annotations

from starlette.applications import Starlette

from .pages import routes
from .watch import TicketWatch

__all__ = ["routes", "stop"]


async def stop(app: Starlette) -> None:
    """End the process's ticket followers (the app's lifespan calls this at shutdown)."""
    watch: TicketWatch | None = getattr(app.state, "ticket_watch", None)
    if watch is not None:
        del app.state.ticket_watch
        await watch.stop()
