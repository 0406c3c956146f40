"""The engine's event bus: what ``docker events`` shows.

Services publish :class:`Event` records (Docker's field names, so the wire form is a plain copy);
subscribers get an async iterator of the events that pass their :class:`EventFilter`, starting with
the matching ones still in the bounded history when ``since`` is given.

Invariants:

- :meth:`EventBus.publish` never blocks and may be called from any thread (image and container work
  runs partly in worker threads); events reach each subscriber in publication order.
- A subscriber that falls ``queue_size`` events behind is ended (its iterator stops) rather than
  silently skipping events or letting memory grow; Docker's clients then reconnect with ``since``.
- The history keeps the last ``history_size`` events; ``since`` earlier than the oldest kept event
  replays what is left.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from backend.engine.errors import InvalidParameter

EVENT_TYPES = frozenset({"container", "image", "volume", "network", "daemon", "plugin", "node", "service",
                         "secret", "config", "builder"})
"""Docker's event types (``Type``)."""

FILTER_KEYS = frozenset({"type", "event", "container", "image", "label", "volume", "network", "daemon", "scope"})
"""The ``filters`` keys :class:`EventFilter` understands."""


@dataclass(frozen=True)
class Actor:
    """What an event is about: its ID and attributes (``name``, ``image``, labels, ``exitCode``...)."""

    ID: str
    Attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """One event, with Docker's field names. ``time`` is Unix seconds, ``timeNano`` Unix nanoseconds."""

    Type: str
    Action: str
    Actor: Actor
    time: int
    timeNano: int
    scope: str = "local"

    @staticmethod
    def now(type_: str, action: str, actor_id: str, attributes: Mapping[str, str] | None = None) -> Event:
        """An event stamped with the current time."""
        nanos = time.time_ns()
        return Event(type_, action, Actor(actor_id, dict(attributes or {})), nanos // 1_000_000_000, nanos)


def _strip_tag(name: str) -> str:
    """``repo:tag`` -> ``repo`` (a ``:`` inside a registry host:port is not a tag)."""
    head, sep, tail = name.rpartition(":")
    if sep and "/" not in tail:
        return head
    return name


@dataclass(frozen=True)
class EventFilter:
    """Docker's event filters (a ``map[string][]string``): values of one key are OR-ed, keys AND-ed.

    ``container``/``volume``/``network`` match the actor's ID (or an ID prefix) or its ``name``
    attribute for events of that type; ``image`` matches image events by ID or name and container
    events by their ``image`` attribute (with or without tag); ``event`` matches the action (an
    ``exec_start: sh`` action also matches ``exec_start``); ``label`` is ``key`` or ``key=value``
    against the attributes, every one required.
    """

    values: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @staticmethod
    def parse(filters: Mapping[str, Sequence[str]] | None) -> EventFilter:
        """Check and freeze ``filters``. Raises InvalidParameter for an unknown key or type."""
        out: dict[str, frozenset[str]] = {}
        for key, values in (filters or {}).items():
            if key not in FILTER_KEYS:
                raise InvalidParameter(f"invalid filter '{key}'")
            if isinstance(values, str) or not all(isinstance(v, str) for v in values):
                raise InvalidParameter(f"invalid filter '{key}': values must be strings")
            if key == "type":
                unknown = sorted(set(values) - EVENT_TYPES)
                if unknown:
                    raise InvalidParameter(f"invalid filter 'type={unknown[0]}'")
            if values:
                out[key] = frozenset(values)
        return EventFilter(out)

    def _fuzzy(self, key: str, *sources: str) -> bool:
        wanted = self.values.get(key)
        if wanted is None:
            return True
        return any(s and (s == w or s.startswith(w)) for s in sources for w in wanted)

    def _exact(self, key: str, *sources: str) -> bool:
        wanted = self.values.get(key)
        if wanted is None:
            return True
        return any(s in wanted for s in sources if s)

    def _named(self, key: str, event: Event) -> bool:
        if key not in self.values:
            return True
        return event.Type == key and self._fuzzy(key, event.Actor.ID, event.Actor.Attributes.get("name", ""))

    def matches(self, event: Event) -> bool:
        """Whether ``event`` passes every filter."""
        attrs = event.Actor.Attributes
        action_base = event.Action.split(":", 1)[0].strip()
        if not self._exact("event", event.Action, action_base):
            return False
        if not self._exact("type", event.Type) or not self._exact("scope", event.scope):
            return False
        if not (self._named("container", event) and self._named("volume", event) and self._named("network", event)):
            return False
        if "daemon" in self.values and not (event.Type == "daemon" and self._exact(
                "daemon", event.Actor.ID, attrs.get("name", ""))):
            return False
        if "image" in self.values:
            name = attrs.get("name" if event.Type == "image" else "image", "")
            if not self._exact("image", event.Actor.ID, name, _strip_tag(event.Actor.ID), _strip_tag(name)):
                return False
        for expr in self.values.get("label", ()):
            key, sep, value = expr.partition("=")
            if key not in attrs or (sep and attrs[key] != value):
                return False
        return True


class _Subscriber:
    def __init__(self, loop: asyncio.AbstractEventLoop, filt: EventFilter, queue_size: int) -> None:
        self.loop = loop
        self.filter = filt
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.queue_size = queue_size
        self.overflowed = False

    def offer(self, event: Event | None) -> None:
        """Runs on the subscriber's loop."""
        if self.overflowed:
            return
        if event is not None and self.queue.qsize() >= self.queue_size:
            self.overflowed = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(event)


class EventBus:
    """Publish/subscribe for engine events, with a bounded history for ``since``."""

    def __init__(self, *, history_size: int = 1024, queue_size: int = 4096) -> None:
        if history_size < 1 or queue_size < 1:
            raise InvalidParameter("history_size and queue_size must be at least 1")
        self._history: collections.deque[Event] = collections.deque(maxlen=history_size)
        self._subscribers: list[_Subscriber] = []
        self._queue_size = queue_size
        self._lock = threading.Lock()

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open (``NEventsListener`` in ``docker info``)."""
        with self._lock:
            return len(self._subscribers)

    def publish(self, event: Event) -> None:
        """Record ``event`` and hand it to every subscriber whose filter it passes. Never blocks."""
        with self._lock:
            self._history.append(event)
            targets = [s for s in self._subscribers if s.filter.matches(event)]
        for sub in targets:
            self._deliver(sub, event)

    def emit(self, type_: str, action: str, actor_id: str, attributes: Mapping[str, str] | None = None) -> Event:
        """Publish an event stamped now; returns it."""
        event = Event.now(type_, action, actor_id, attributes)
        self.publish(event)
        return event

    @staticmethod
    def _deliver(sub: _Subscriber, event: Event | None) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is sub.loop:
            sub.offer(event)
        else:
            try:
                sub.loop.call_soon_threadsafe(sub.offer, event)
            except RuntimeError:  # the subscriber's loop is closed: it is gone
                pass

    def history(self, filt: EventFilter | None = None, since_ns: int | None = None,
                until_ns: int | None = None) -> list[Event]:
        """Kept events passing ``filt`` with ``since_ns <= timeNano <= until_ns`` (Unix nanoseconds)."""
        filt = filt or EventFilter()
        with self._lock:
            kept = list(self._history)
        return [e for e in kept if _in_window(e, since_ns, until_ns) and filt.matches(e)]

    def subscribe(self, filt: EventFilter | None = None, *, since_ns: int | None = None,
                  until_ns: int | None = None) -> Subscription:
        """Subscribe now (events published from this call on are kept for the subscriber) and return
        the subscription: an async iterator of the events passing ``filt``, first the kept ones from
        ``since_ns`` on (when given), then new ones as they are published, until ``until_ns`` (Unix
        nanoseconds) passes; forever when it is None. Must be called on the event loop that iterates.

        The iterator also ends when the subscriber falls too far behind (see the module docstring).
        :meth:`Subscription.close` (or ``async with``) unsubscribes.
        """
        filt = filt or EventFilter()
        sub = _Subscriber(asyncio.get_running_loop(), filt, self._queue_size)
        with self._lock:
            replay = ([e for e in self._history if _in_window(e, since_ns, until_ns) and filt.matches(e)]
                      if since_ns is not None else [])
            self._subscribers.append(sub)
        return Subscription(self, sub, replay, until_ns)

    def close(self) -> None:
        """End every open subscription (their iterators stop after what they hold): the daemon is stopping."""
        with self._lock:
            targets = list(self._subscribers)
        for sub in targets:
            self._deliver(sub, None)

    def _unsubscribe(self, sub: _Subscriber) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)


class Subscription:
    """One subscriber's view of the bus (see :meth:`EventBus.subscribe`)."""

    def __init__(self, bus: EventBus, sub: _Subscriber, replay: list[Event], until_ns: int | None) -> None:
        self._bus = bus
        self._sub = sub
        self._replay = collections.deque(replay)
        self._until_ns = until_ns
        self._closed = False

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        if self._replay:
            return self._replay.popleft()
        until_ns = self._until_ns
        if until_ns is None:
            item = await self._sub.queue.get()
        else:
            remaining = (until_ns - time.time_ns()) / 1e9
            try:
                if remaining <= 0:
                    item = self._sub.queue.get_nowait()
                else:
                    item = await asyncio.wait_for(self._sub.queue.get(), timeout=remaining)
            except (TimeoutError, asyncio.QueueEmpty):
                item = None
            if item is not None and item.timeNano > until_ns:
                item = None
        if item is None:
            self.close()
            raise StopAsyncIteration
        return item

    @property
    def overflowed(self) -> bool:
        """True when the subscription ended because the subscriber fell behind."""
        return self._sub.overflowed

    def close(self) -> None:
        """Unsubscribe; the iterator stops. Idempotent."""
        self._closed = True
        self._bus._unsubscribe(self._sub)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


def _in_window(event: Event, since_ns: int | None, until_ns: int | None) -> bool:
    if since_ns is not None and event.timeNano < since_ns:
        return False
    return not (until_ns is not None and event.timeNano > until_ns)
