"""What every command shares: its name, the exit statuses, the errors that end it, stdout."""

from __future__ import annotations

import io
import sys
from typing import Final, TextIO

from ..errors import TikTokError

__all__ = [
    "DEFAULT_DB",
    "ENV_CLIENT_KEY",
    "ENV_CLIENT_SECRET",
    "ERASE_OWED",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_RESUMABLE",
    "EXIT_USAGE",
    "PROG",
    "RESUME_HINT",
    "CommandError",
    "ResumableError",
    "UsageError",
    "stdout",
]

PROG: Final = "tiktok-reposts"
EXIT_OK: Final = 0
#: The run finished, but some users failed; or a command could not do its work (an export
#: that failed, a token refused for a reason no retry cures). An unreachable API is EXIT_RESUMABLE.
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
#: sysexits' EX_TEMPFAIL: stopped early (quota, an API down or unreachable, Ctrl-C); the same
#: command resumes.
EXIT_RESUMABLE: Final = 75
#: A KeyboardInterrupt outside a harvest (which turns Ctrl-C into EXIT_RESUMABLE).
EXIT_INTERRUPTED: Final = 130

ENV_CLIENT_KEY: Final = "TIKTOK_CLIENT_KEY"
ENV_CLIENT_SECRET: Final = "TIKTOK_CLIENT_SECRET"
RESUME_HINT: Final = "run the same command again to resume"
#: What `refresh` and `status` say while a refresh's erasure is owed (`Store.erase_owed`).
ERASE_OWED: Final = (
    "deleted data may still be in the store's files (another process was reading the store"
    " when they were to be rewritten): run refresh again"
)
#: The store every command uses without --db.
DEFAULT_DB: Final = "harvest.db"


class CommandError(TikTokError):
    """Report why a command could not do its work: one line, no traceback, exit status 1."""

    exit_status = EXIT_FAILED


class ResumableError(CommandError):
    """Report a failure that a later run of the same command may not meet: exit status 75."""

    exit_status = EXIT_RESUMABLE


class UsageError(CommandError):
    """Report a usage or configuration error: one line, exit status 2."""

    exit_status = EXIT_USAGE


def stdout() -> TextIO:
    """Return standard output, set never to fail on a character the locale cannot encode."""
    # Usernames and errors can hold any character; an ASCII locale must not crash the output.
    stream = sys.stdout
    if isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(errors="backslashreplace")
    return stream
