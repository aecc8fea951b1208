"""Errors of the export and backend layer."""
from __future__ import annotations

from motion.errors import UserError


class BackendUnavailableError(UserError):
    """An inference backend that cannot run on this machine: the message names it, the reason and what to use
    instead; `--backend auto` leaves it out and shows the reason."""

    def __init__(self, backend: str, reason: str, instead: str):
        super().__init__(f"{backend} cannot run here ({reason}); use --backend {instead}")
        self.reason = reason
