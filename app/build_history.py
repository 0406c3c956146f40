"""Builds started from the app: what was asked (:class:`BuildRequest`), the steps as the classic builder reports
them (:class:`StepTracker`), and the history of finished builds (:class:`BuildHistory`). Qt-free.

The history is a small JSON list kept by the caller (the app keeps it in QSettings through a
:class:`TextStore`), newest first, at most :data:`MAX_RECORDS`; each build's output (its last
:data:`MAX_OUTPUT_LINES` lines) is a file ``<id>.log`` in the history's log directory, removed with its record.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

MAX_RECORDS = 50
MAX_OUTPUT_LINES = 2000

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_RECORD_ID = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class BuildRequest:
    """What to build: the context ``folder``, the Dockerfile (a path; "" for ``<folder>/Dockerfile``), the tags,
    build args, target stage and the no-cache and pull switches."""

    folder: str
    dockerfile: str = ""
    tags: tuple[str, ...] = ()
    build_args: tuple[tuple[str, str], ...] = ()
    target: str = ""
    no_cache: bool = False
    pull: bool = False

    @property
    def dockerfile_path(self) -> str:
        """The Dockerfile's absolute path."""
        return os.path.abspath(self.dockerfile or os.path.join(self.folder, "Dockerfile"))

    @property
    def title(self) -> str:
        """The first tag, else the folder's name."""
        return self.tags[0] if self.tags else os.path.basename(os.path.normpath(self.folder)) or self.folder


class StepState(Enum):
    RUNNING = "running"
    DONE = "done"
    CACHED = "CACHED"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class Step:
    """One ``Step N/M : INSTRUCTION`` of a build; ``duration`` is set once it is no longer running."""

    number: int
    total: int
    instruction: str
    started: float
    state: StepState = StepState.RUNNING
    duration: float | None = None


class StepTracker:
    """Follows the classic builder's ``stream`` text (in chunks of any size) and keeps :attr:`steps`.

    A step runs from its ``Step N/M`` line to the next one (or the end); `` ---> Using cache`` marks it CACHED.
    :meth:`finish` closes the running step as done, failed or cancelled. ``clock`` gives seconds (monotonic)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.steps: list[Step] = []
        self._clock = clock
        self._partial = ""

    @property
    def current(self) -> Step | None:
        """The running step, if any."""
        return self.steps[-1] if self.steps and self.steps[-1].state is StepState.RUNNING else None

    @property
    def cached(self) -> int:
        return sum(1 for step in self.steps if step.state is StepState.CACHED)

    @property
    def total(self) -> int:
        """The number of steps the builder announced (the steps seen so far before the first announcement)."""
        return self.steps[0].total if self.steps else 0

    def feed(self, text: str) -> list[Step]:
        """Read more output; returns the steps that started or changed state (in order)."""
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        changed: list[Step] = []
        for line in lines:
            match = _STEP.match(line.rstrip("\r"))
            if match:
                if (step := self._close(StepState.DONE)) is not None:
                    changed.append(step)
                self.steps.append(Step(int(match[1]), int(match[2]), match[3].strip(), self._clock()))
                changed.append(self.steps[-1])
            elif line.strip() == "---> Using cache" and (step := self.current) is not None:
                step.state = StepState.CACHED
                changed.append(step)
        return changed

    def finish(self, state: StepState) -> Step | None:
        """End the build: the running step (if any) becomes ``state`` (DONE, FAILED or CANCELLED); returns it."""
        return self._close(state)

    def _close(self, state: StepState) -> Step | None:
        step = self.steps[-1] if self.steps else None
        if step is None or step.duration is not None:
            return None
        step.duration = self._clock() - step.started
        if step.state is StepState.RUNNING or state is not StepState.DONE:  # a cached step stays CACHED when done
            step.state = state
        return step


class BuildResult(Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class BuildRecord:
    """One finished build. ``message`` is the error for a failed one; ``started`` is a Unix time."""

    request: BuildRequest
    started: float
    duration: float
    result: BuildResult
    message: str = ""
    cached: int = 0
    steps: int = 0
    image_id: str = ""
    id: str = field(default_factory=lambda: secrets.token_hex(8))

    @property
    def key(self) -> str:
        return self.id

    @property
    def outcome(self) -> str:
        """``succeeded``, ``failed: <message>`` or ``cancelled``."""
        return f"failed: {self.message}" if self.result is BuildResult.FAILED and self.message else self.result.value

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["result"] = self.result.value
        return doc

    @staticmethod
    def from_json(doc: dict[str, Any]) -> BuildRecord:
        """Raises KeyError, TypeError or ValueError for a malformed record."""
        ident, req = str(doc["id"]), doc["request"]
        if not _RECORD_ID.match(ident):  # it names the output file
            raise ValueError(f"bad build record id {ident!r}")
        request = BuildRequest(str(req["folder"]), str(req.get("dockerfile", "")),
                               tuple(str(t) for t in req.get("tags", ())),
                               tuple((str(k), str(v)) for k, v in req.get("build_args", ())),
                               str(req.get("target", "")), bool(req.get("no_cache")), bool(req.get("pull")))
        return BuildRecord(request, float(doc["started"]), float(doc["duration"]), BuildResult(doc["result"]),
                           str(doc.get("message", "")), int(doc.get("cached", 0)), int(doc.get("steps", 0)),
                           str(doc.get("image_id", "")), ident)


class TextStore(Protocol):
    """Where the history's JSON text lives ("" when there is none yet)."""

    def load(self) -> str: ...

    def save(self, text: str) -> None: ...


class BuildHistory:
    """The finished builds, newest first, and their output files under ``log_dir``."""

    def __init__(self, store: TextStore, log_dir: Path) -> None:
        self.store, self.log_dir = store, log_dir

    def records(self) -> list[BuildRecord]:
        """The records, newest first; malformed entries (an edited or older store) are skipped."""
        try:
            docs = json.loads(self.store.load() or "[]")
        except ValueError:
            return []
        records = []
        for doc in docs if isinstance(docs, list) else []:
            try:
                records.append(BuildRecord.from_json(doc))
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
        return records

    def add(self, record: BuildRecord, output: str) -> None:
        """Record ``record`` first, with the last lines of ``output``; drops the oldest beyond MAX_RECORDS.
        Raises OSError when the log directory cannot be written."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        lines = output.splitlines(keepends=True)[-MAX_OUTPUT_LINES:]
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=self.log_dir, delete=False) as f:
            f.write("".join(lines))
        os.replace(f.name, self._log(record.id))
        records = [record, *(r for r in self.records() if r.id != record.id)]
        for dropped in records[MAX_RECORDS:]:
            self._log(dropped.id).unlink(missing_ok=True)
        self.store.save(json.dumps([r.to_json() for r in records[:MAX_RECORDS]]))

    def output(self, record: BuildRecord) -> str:
        """The stored output of ``record`` ("" when it is gone)."""
        try:
            return self._log(record.id).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _log(self, ident: str) -> Path:
        return self.log_dir / f"{ident}.log"

