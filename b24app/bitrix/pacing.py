"""Pacing calls to one portal under Bitrix24's two limits (spec §4).

1. **Request rate**: a leaky bucket per portal (and source IP). Each request adds 1, the
   level drains at ``rate`` per second, and a request that would take it past ``burst`` is
   refused with 503 ``QUERY_LIMIT_EXCEEDED``. 2/s and 50 on most plans, 5/s and 250 on
   Enterprise. A ``batch`` of up to 50 calls counts as one request.
2. **Execution time** ("operating"): per app and method, Bitrix sums the seconds its
   calls ran over a sliding 10-minute window and refuses further calls with 429
   ``OPERATION_TIME_LIMIT`` once the sum passes the budget (480 s in the docs' example).
   Every reply reports the running sum as ``time.operating`` and the moment the oldest
   minute of it drops out as ``time.operating_reset_at``.

This module holds the arithmetic as pure functions (:func:`take`, :func:`observe`,
:func:`budget_wait`) and two stores that keep the state per portal:
:class:`MemoryPacerStore` for one process and tests, :class:`RedisPacerStore` for several
worker processes sharing one portal. Bulk traffic (campaigns) may only use
``1 - interactive_reserve`` of either limit, so a campaign never makes a person wait.

We keep our own bucket instead of pyrate-limiter or limits because neither models a
leaky bucket with a reserved share for one class of traffic, nor a budget whose level
the server reports back.

Docs: https://apidocs.bitrix24.com/limits.html
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

BATCH_SIZE = 50


@dataclass(frozen=True)
class Limits:
    """The limits of one portal; defaults are those of every plan but Enterprise."""

    rate: float = 2.0
    burst: int = 50
    op_budget_s: float = 480.0
    op_window_s: float = 600.0
    # A person's single message needs one request and a moment of execution time, so a small
    # share is enough to keep them from ever waiting behind a campaign; every token held back
    # costs bulk sending 1/rate seconds against the ceiling (issue 7 measures that).
    interactive_reserve: float = 0.06

    def bucket_cap(self, *, interactive: bool) -> float:
        """How full the request bucket may get for this class of traffic."""
        return self.burst if interactive else self.burst * (1.0 - self.interactive_reserve)

    def budget_cap(self, *, interactive: bool) -> float:
        """How many seconds of execution this class of traffic may use per window."""
        if interactive:
            return self.op_budget_s
        return self.op_budget_s * (1.0 - self.interactive_reserve)


ENTERPRISE = Limits(rate=5.0, burst=250)


@dataclass(frozen=True)
class BucketState:
    """The request bucket: ``level`` as of ``updated_at`` (unix seconds)."""

    level: float = 0.0
    updated_at: float = 0.0


def drained(state: BucketState, now: float, limits: Limits) -> float:
    """The bucket's level at ``now``; a clock that went backwards drains nothing."""
    elapsed = max(0.0, now - state.updated_at)
    return max(0.0, state.level - elapsed * limits.rate)


def take(
    state: BucketState, now: float, limits: Limits, *, cost: int = 1, interactive: bool
) -> tuple[BucketState, float]:
    """Try to add ``cost`` requests to the bucket at ``now``.

    Returns ``(new_state, 0.0)`` when granted, or ``(state, wait)`` with ``state`` unchanged
    and ``wait`` the seconds until the same request would fit. Bulk traffic sees a smaller
    bucket (``burst * (1 - interactive_reserve)``), so the top of it stays free for people.
    """
    cap = limits.bucket_cap(interactive=interactive)
    if cost > cap:
        raise ValueError(f"a cost of {cost} never fits in a bucket of {cap:g}")
    level = drained(state, now, limits)
    overflow = level + cost - cap
    if overflow <= 1e-9:
        return BucketState(level=level + cost, updated_at=now), 0.0
    return state, overflow / limits.rate


@dataclass(frozen=True)
class OperatingState:
    """One method's execution time: ``used_s`` as last reported, until ``reset_at``."""

    used_s: float = 0.0
    reset_at: float = 0.0


def observe(
    state: OperatingState,
    *,
    operating: float | None,
    operating_reset_at: int | None,
    now: float,
    limits: Limits | None = None,
) -> OperatingState:
    """Fold one reply's ``time.operating``/``operating_reset_at`` into ``state``.

    Bitrix reports the running total over its window, not the cost of this call, so the
    reported value replaces ours rather than adding to it. Replies from parallel workers
    can arrive out of order: one with an older ``operating_reset_at`` is ignored, and for
    the same window the larger total wins. Without ``operating_reset_at`` the total is
    assumed to stay for a whole window from ``now``.
    """
    if operating is None:
        return state
    window = (limits or Limits()).op_window_s
    reset_at = float(operating_reset_at) if operating_reset_at is not None else now + window
    current = state.reset_at > now
    if current and reset_at < state.reset_at:
        return state
    if current and reset_at == state.reset_at:
        return replace(state, used_s=max(state.used_s, operating))
    return OperatingState(used_s=operating, reset_at=reset_at)


def budget_wait(state: OperatingState, now: float, limits: Limits, *, interactive: bool) -> float:
    """Seconds to wait before calling the method again; 0 when within its budget.

    Once ``reset_at`` passes, the oldest minute of usage has dropped out; how much that
    frees is unknown until the next reply, so we let one call through and :func:`observe`
    its report (Bitrix lets a call that crosses the limit finish, spec §4.2).
    """
    if now >= state.reset_at:
        return 0.0
    if state.used_s < limits.budget_cap(interactive=interactive):
        return 0.0
    return state.reset_at - now


def ceiling_msgs_per_s(limits: Limits, cost_s: float) -> float:
    """The most messages per second a portal can take: 50 per batched request, or the
    execution budget divided by what one message costs, whichever is lower."""
    by_rate = limits.rate * BATCH_SIZE
    if cost_s <= 0:
        return by_rate
    return min(by_rate, (limits.op_budget_s / limits.op_window_s) / cost_s)


def t_min(n: int, limits: Limits, cost_s: float) -> float:
    """The least time ``n`` messages can take from a full budget and an empty bucket.

    The first ``burst`` batched requests go out at once, the rest at ``rate``; the first
    ``op_budget_s`` of execution is free, the rest accrues at ``budget / window``.
    """
    requests_needed = math.ceil(n / BATCH_SIZE)
    by_rate = (requests_needed - limits.burst) / limits.rate
    by_budget = (n * cost_s - limits.op_budget_s) / (limits.op_budget_s / limits.op_window_s)
    return max(by_rate, by_budget, 0.0)


class PacerStore(Protocol):
    """Where the pacing state of every portal lives; ``key`` names a portal."""

    def acquire(
        self, key: str, now: float, *, interactive: bool, method: str | None = None
    ) -> float:
        """Take one request token for ``key``: 0.0 when taken, else seconds to wait.

        Also waits while ``method``'s execution budget is spent (every recorded method's
        when ``method`` is None). Nothing is taken when the answer is > 0.
        """
        ...

    def record_operating(
        self,
        key: str,
        method: str,
        operating: float | None,
        operating_reset_at: int | None,
        now: float,
    ) -> None:
        """Remember what a reply said about ``method``'s execution time."""
        ...


def decide(
    bucket: BucketState,
    budgets: dict[str, OperatingState],
    now: float,
    limits: Limits,
    *,
    interactive: bool,
    method: str | None,
) -> tuple[BucketState, float]:
    """One acquire decision for any store: the method budget(s) first, then the bucket.

    Returns ``(new_bucket, 0.0)`` when a token was taken (the store saves ``new_bucket``),
    or ``(bucket, wait)`` unchanged. ``budgets`` maps method names to their state; with
    ``method=None`` the worst of them counts. Stores call this under their own lock.
    """
    if method is not None:
        relevant = [budgets[method]] if method in budgets else []
    else:
        relevant = list(budgets.values())
    budget = max(
        (budget_wait(s, now, limits, interactive=interactive) for s in relevant), default=0.0
    )
    if budget > 0:
        return bucket, budget
    return take(bucket, now, limits, interactive=interactive)


# The first draft's private name, still used by b24app.portals.pacer.
_acquire = decide


class MemoryPacerStore:
    """A thread-safe in-process :class:`PacerStore` (one process, tests, the sandbox)."""

    def __init__(self, limits_for: Callable[[str], Limits] | None = None) -> None:
        self._limits_for = limits_for or (lambda _key: Limits())
        self._lock = threading.Lock()
        self._buckets: dict[str, BucketState] = {}
        self._budgets: dict[str, dict[str, OperatingState]] = {}

    def acquire(
        self, key: str, now: float, *, interactive: bool, method: str | None = None
    ) -> float:
        """See :meth:`PacerStore.acquire`."""
        limits = self._limits_for(key)
        with self._lock:
            state, wait = decide(
                self._buckets.get(key, BucketState()),
                self._budgets.get(key, {}),
                now,
                limits,
                interactive=interactive,
                method=method,
            )
            self._buckets[key] = state
            return wait

    def record_operating(
        self,
        key: str,
        method: str,
        operating: float | None,
        operating_reset_at: int | None,
        now: float,
    ) -> None:
        """See :meth:`PacerStore.record_operating`."""
        limits = self._limits_for(key)
        with self._lock:
            methods = self._budgets.setdefault(key, {})
            methods[method] = observe(
                methods.get(method, OperatingState()),
                operating=operating,
                operating_reset_at=operating_reset_at,
                now=now,
                limits=limits,
            )


class RedisPacerStore:
    """A :class:`PacerStore` in Redis, shared by every process that sends for a portal.

    Each update is a WATCH/MULTI transaction that reruns when another process changed the
    same keys in between, so the arithmetic stays in the pure functions above (no second
    copy in Lua). Keys expire once the state they hold has drained away.
    """

    def __init__(
        self,
        redis_client: Any,
        limits_for: Callable[[str], Limits],
        *,
        prefix: str = "b24app:pacer:",
    ) -> None:
        # Typed Any: redis.Redis and redis.cluster.RedisCluster both fit, and redis-py's
        # generics differ by decode_responses.
        self._redis = redis_client
        self._limits_for = limits_for
        self._prefix = prefix

    def _keys(self, key: str) -> tuple[str, str]:
        return f"{self._prefix}{key}:bucket", f"{self._prefix}{key}:operating"

    @staticmethod
    def _text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    def _budgets(self, raw: dict[Any, Any]) -> dict[str, OperatingState]:
        budgets: dict[str, OperatingState] = {}
        for name, value in raw.items():
            used, _, reset = self._text(value).partition(",")
            budgets[self._text(name)] = OperatingState(float(used), float(reset))
        return budgets

    def acquire(
        self, key: str, now: float, *, interactive: bool, method: str | None = None
    ) -> float:
        """See :meth:`PacerStore.acquire`."""
        limits = self._limits_for(key)
        bucket_key, operating_key = self._keys(key)
        outcome: list[float] = []

        def attempt(pipe: Any) -> None:
            outcome.clear()
            raw = pipe.hgetall(bucket_key)
            bucket = BucketState(
                float(raw.get(b"level", raw.get("level", 0.0))),
                float(raw.get(b"updated_at", raw.get("updated_at", 0.0))),
            )
            state, wait = decide(
                bucket,
                self._budgets(pipe.hgetall(operating_key)),
                now,
                limits,
                interactive=interactive,
                method=method,
            )
            outcome.append(wait)
            if wait > 0:
                return
            pipe.multi()
            pipe.hset(bucket_key, mapping={"level": state.level, "updated_at": state.updated_at})
            # Once drained the bucket is empty, which is what a missing key means.
            pipe.expire(bucket_key, max(1, math.ceil(state.level / limits.rate) + 1))

        self._redis.transaction(attempt, bucket_key, operating_key)
        return outcome[0]

    def record_operating(
        self,
        key: str,
        method: str,
        operating: float | None,
        operating_reset_at: int | None,
        now: float,
    ) -> None:
        """See :meth:`PacerStore.record_operating`."""
        if operating is None:
            return
        limits = self._limits_for(key)
        _, operating_key = self._keys(key)

        def attempt(pipe: Any) -> None:
            raw = pipe.hget(operating_key, method)
            state = OperatingState()
            if raw is not None:
                used, _, reset = self._text(raw).partition(",")
                state = OperatingState(float(used), float(reset))
            new = observe(
                state,
                operating=operating,
                operating_reset_at=operating_reset_at,
                now=now,
                limits=limits,
            )
            if new == state:
                return
            pipe.multi()
            pipe.hset(operating_key, method, f"{new.used_s!r},{new.reset_at!r}")
            # reset_at is at most one window ahead, so two windows outlive every entry.
            pipe.expire(operating_key, math.ceil(2 * limits.op_window_s))

        self._redis.transaction(attempt, operating_key)
