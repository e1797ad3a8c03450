"""The simulator's Batch Compliance endpoints: tasks, their states, the valid ids they find.

A task checks the ids of its file against the videos that exist at the epoch it was created in:
the videos of every user whose list the simulator has served, at that epoch, moderated ones
left out. A video an epoch removed is reported invalid by every task created at that epoch or
later; an id the simulator never served is invalid too. The HTTP side (billing, tokens, faults)
is `_server`'s; this module reads uploads and bodies and keeps the tasks.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from ._data import timeline, user_kind

__all__ = [
    "CREATE_TASK_PATH",
    "DOWNLOAD_TASK_PATH",
    "MAX_TASK_IDS",
    "TASK_STATUS_PATH",
    "Refusal",
    "Task",
    "TaskBook",
]

CREATE_TASK_PATH: Final = "/v2/research/validation_task/create/"
TASK_STATUS_PATH: Final = "/v2/research/validation_task_status/get/"
DOWNLOAD_TASK_PATH: Final = "/v2/research/validation_task/download/"
#: The most ids one task takes, as documented.
MAX_TASK_IDS: Final = 10_000
_CATEGORIES: Final = ("video", "comment")
# Task ids above int64, as the documentation's example is; most are above uint64 too.
_TASK_ID_LOW: Final = 1 << 63
_TASK_ID_HIGH: Final = 10**20
_ID_LINE: Final = re.compile(rb"[0-9]{1,40}")


class Refusal(Exception):
    """A request the compliance endpoints refuse: 400 with this code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _upload_refused(message: str) -> Refusal:
    return Refusal("invalid_file_upload", message)


def read_ids(content: bytes) -> tuple[int, ...]:
    """Return the ids of an uploaded file (one per line); raise Refusal if it is not one."""
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        raise _upload_refused("The uploaded file is not UTF-8 text") from None
    ids: dict[int, None] = {}
    for number, line in enumerate(content.split(b"\n"), start=1):
        line = line.strip(b" \t\r")
        if not line:
            continue
        if not _ID_LINE.fullmatch(line):
            shown = line[:40].decode("utf-8", "replace")
            raise _upload_refused(f"Line {number} of the uploaded file is not an id: {shown!r}")
        ids[int(line)] = None
    if not ids:
        raise _upload_refused("The uploaded file holds no id")
    if len(ids) > MAX_TASK_IDS:
        raise _upload_refused(
            f"The uploaded file holds {len(ids)} ids; a task takes at most {MAX_TASK_IDS}"
        )
    return tuple(ids)


def check_category(value: Any) -> str:
    """Return a form's category; raise Refusal unless it is one the API takes."""
    if value is None:
        raise Refusal("invalid_params", "Invalid category: the form field category is required")
    if not isinstance(value, str) or value not in _CATEGORIES:
        shown = value if isinstance(value, str) else type(value).__name__
        raise Refusal("invalid_params", f"Invalid category {shown!r}: video or comment")
    return value


def read_task_id(body: bytes, content_type: str) -> int:
    """Return the task id a status or download body names; raise Refusal if it names none."""
    if content_type != "application/json":
        raise Refusal("invalid_params", "Invalid Content-Type: application/json is expected")
    try:
        payload = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise Refusal("invalid_params", "Invalid request body: it is not valid JSON") from None
    value = payload.get("task_id") if isinstance(payload, dict) else None
    # An integer, or the string of its digits; a float (1.2345678910987655e+19, which a client
    # that decoded the id as a double would send) names no task.
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Refusal("invalid_params", f"Invalid task_id {value!r}: an integer is expected")
    return value


@dataclass
class Task:
    """One compliance task: what it was sent, when, and what it found."""

    task_id: int
    category: str
    ids: tuple[int, ...]
    #: The simulator's epoch when the task was created: the world it checks against.
    epoch: int
    #: `clock()` when it was created.
    created: float
    #: Whether it ends Failed instead of Completed.
    fails: bool
    #: The ids found valid, in the order they were sent.
    valid: tuple[int, ...]
    #: Status answers of Processing given so far.
    processing_answers: int = 0


class TaskBook:
    """The compliance tasks of one simulator, and the videos that exist to check ids against."""

    def __init__(self, seed: int | None) -> None:
        self.tasks: dict[int, Task] = {}
        # (username, huge) of every user whose list was served, in order: their videos exist.
        self.served: dict[tuple[str, bool], None] = {}
        # epoch -> (how many served users it holds, the ids of their videos at that epoch).
        self._exists: dict[int, tuple[int, set[int]]] = {}
        self._rng = random.Random(None if seed is None else f"compliance:{seed}")
        #: How many of the next tasks fail, whatever `task_failure_rate` draws.
        self.failures_scripted = 0

    def random(self) -> float:
        """Draw from the compliance stream (task ids, failures, faults)."""
        return self._rng.random()

    def serve(self, username: str, huge: bool) -> None:
        """Note that a user's list was served: its videos exist for compliance tasks."""
        # Called for every page served: one dict lookup; the kind is resolved in `existing`.
        key = (username, huge)
        if key not in self.served:
            self.served[key] = None

    def existing(self, epoch: int) -> set[int]:
        """Return the ids of every video of a served user at `epoch`, moderated ones left out."""
        count, ids = self._exists.get(epoch, (0, set()))
        if count < len(self.served):
            for username, huge in list(self.served)[count:]:
                line = timeline(username, huge or user_kind(username) == "hugeid", epoch)
                ids.update(
                    numbers[1]
                    for numbers, gone in zip(line.draws, line.moderated, strict=True)
                    if not gone
                )
            self._exists[epoch] = (len(self.served), ids)
        return ids

    def create(
        self, ids: Iterable[int], category: str, epoch: int, now: float, failure_rate: float
    ) -> Task:
        """Make a task of these ids at `epoch`: its result is fixed now."""
        ids = tuple(ids)
        task_id = self._rng.randrange(_TASK_ID_LOW, _TASK_ID_HIGH)
        while task_id in self.tasks:
            task_id += 1
        if self.failures_scripted:
            self.failures_scripted -= 1
            fails = True
        else:
            fails = failure_rate > 0 and self._rng.random() < failure_rate
        exists = self.existing(epoch) if category == "video" else set()
        valid = tuple(video_id for video_id in ids if video_id in exists)
        task = Task(task_id, category, ids, epoch, now, fails, valid)
        self.tasks[task_id] = task
        return task

    def find(self, task_id: int) -> Task:
        """Return the task of this id; raise Refusal if there is none."""
        task = self.tasks.get(task_id)
        if task is None:
            raise Refusal("invalid_params", f"Invalid task_id {task_id}: no such task")
        return task


def processing(task: Task, now: float, seconds: float, answers: int) -> bool:
    """Tell whether a task is still Processing: too young, or too few Processing answers given."""
    return now - task.created < seconds or task.processing_answers < answers


def ok_answer(data: Mapping[str, Any], log_id: str) -> bytes:
    """Return a successful answer in the research envelope, as the documentation's examples."""
    error = {"code": "ok", "http_status_code": 200, "log_id": log_id, "message": "ok."}
    return msgspec.json.encode({"data": data, "error": error})
