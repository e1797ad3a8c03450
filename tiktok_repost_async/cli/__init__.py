"""The ``tiktok-reposts`` command: harvest, status, export, diff, refresh, copy, serve and demo.

Exit statuses: 0 when every user of the run reached a final state; 1 when the run finished but
some users failed (the next run retries them), or a command could not do its work; 2 for usage
and configuration errors, or an answer this version cannot read (one line, no traceback); 75
when the run stopped early, resumable: on the daily quota, an API down or unreachable, a shared
ledger out of reach, a repeat round's users coming back empty, or Ctrl-C / SIGTERM.

One module per command (``harvest``, ``status``, ``export``, ``diff``, ``refresh``, ``copy``,
``serve``, ``demo``), each imported only when its command runs or shows its help; ``plan``
estimates the quota days left. The names below load on first use, so that importing ``main``
stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_RESUMABLE,
    EXIT_USAGE,
    CommandError,
    UsageError,
)
from ._parser import build_parser, main

if TYPE_CHECKING:
    from ._console import Console
    from ._progress import render_progress
    from .plan import QuotaPlan, estimate_plan
    from .status import StatusReport, status_report

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_RESUMABLE",
    "EXIT_USAGE",
    "CommandError",
    "Console",
    "QuotaPlan",
    "StatusReport",
    "UsageError",
    "build_parser",
    "estimate_plan",
    "main",
    "render_progress",
    "status_report",
]

_LAZY: dict[str, str] = {
    "Console": "_console",
    "render_progress": "_progress",
    "QuotaPlan": "plan",
    "estimate_plan": "plan",
    "StatusReport": "status",
    "status_report": "status",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
