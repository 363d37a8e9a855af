"""How long a warehouse is waited for, and what the run says while it waits.

Before any data is read, a warehouse that does not answer (a DuckDB file another process holds, a
BigQuery API that hangs) is said at once: --lock_timeout, exit code 2, nothing written. After a night
was scored, it is worth waiting for, but not forever and never in silence: each night's publishing
has --publish_timeout to send its commit, every call it makes is bounded by what is left of that
(each try by ATTEMPT_SECONDS at most), failed tries are retried with backoff, and the run says
"warehouse ... not answering since 22:01:10, retrying" while it waits. A night out of time fails
(PublishTimeout, exit code 1), the date untouched.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

T = TypeVar("T")
ATTEMPT_SECONDS = 60.0  # one try of one call: an answer that takes longer is a warehouse not answering
SAY_EVERY = 30.0  # while waiting, the run says so this often
SAY_AFTER = 5.0  # a call unanswered this long is said while it still waits (API calls answer in well under 1 s)
MAX_BACKOFF = 30.0

log = logging.getLogger(__name__)


class PublishTimeout(RuntimeError):
    """The warehouse did not answer within the wait: nothing of the step was committed."""


@dataclass
class Deadline:
    """A step's time to finish, by the monotonic clock; `what` names the option that set it."""

    seconds: float
    what: str = "--publish_timeout"
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        return self.started + self.seconds - time.monotonic()

    def attempt(self) -> float:
        """One try's bound: what is left, at most ATTEMPT_SECONDS, and never zero (a call needs a moment)."""
        return max(min(self.remaining(), ATTEMPT_SECONDS), 0.5)


class Waiting:
    """Says, at most every SAY_EVERY seconds, that `what` is not answering and since when; and once,
    that it answers again."""

    def __init__(self, what: str):
        self._what = what
        self.since: datetime | None = None
        self._said = -math.inf

    def failed(self, why: str, since: datetime | None = None, then: str = "retrying") -> None:
        if self.since is None:
            self.since = since or datetime.now().astimezone()
        if time.monotonic() - self._said >= SAY_EVERY:
            self._said = time.monotonic()
            log.warning("%s not answering since %s (%s), %s", self._what, self.since.strftime("%H:%M:%S"), why, then)

    def answered(self) -> None:
        if self.since is not None:
            waited = (datetime.now().astimezone() - self.since).total_seconds()
            log.warning("%s answers again, after %.0f s", self._what, waited)
            self.since, self._said = None, -math.inf


def patiently(
    call: Callable[[float], T],
    deadline: Deadline,
    waiting: Waiting,
    transient: tuple[type[BaseException], ...],
    timeout: type[Exception] = PublishTimeout,
) -> T:
    """`call(seconds)` (each try bounded by `seconds`) until it answers; a transient failure is retried
    with backoff until the deadline, then raised as `timeout`. Only for calls that are safe to repeat.
    `waiting` is the caller's own (one per call, or one per wait): it is not shared between threads."""
    backoff = 1.0
    while True:
        started = datetime.now().astimezone()
        answered = threading.Event()

        def say(started: datetime = started, answered: threading.Event = answered) -> None:
            if not answered.is_set():  # not once the call has returned
                waiting.failed(f"no answer for {SAY_AFTER:g} s", started, then="waiting")

        silence = threading.Timer(SAY_AFTER, say)
        silence.daemon = True
        silence.start()
        try:
            answer, error = call(deadline.attempt()), None
        except transient as e:
            answer, error = None, e
        finally:  # whatever the call ended with: its timer says nothing any more
            answered.set()
            silence.cancel()
        if error is None:
            waiting.answered()
            return answer
        why = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no answer'}"[:300]
        if deadline.remaining() <= 0:
            since = (waiting.since or started).strftime("%H:%M:%S")
            raise timeout(
                f"the warehouse did not answer within {deadline.seconds:g} s ({deadline.what}); "
                f"not answering since {since}: {why}"
            ) from None
        waiting.failed(why)
        time.sleep(min(backoff, max(deadline.remaining(), 0)))
        backoff = min(backoff * 2, MAX_BACKOFF)
