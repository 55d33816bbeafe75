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

The last report lags behind the requests still running, so once a request's cost is known
(:func:`batch_cost_s`) the budget also counts the requests granted but not yet reported, and
after ``operating_reset_at`` lets one probe through to learn what dropped out.

This module holds the arithmetic as pure functions (:func:`take`, :func:`observe`,
:func:`budget_wait`, :func:`decide`) and two stores that keep the state per portal:
:class:`MemoryPacerStore` for one process and tests, :class:`RedisPacerStore` for several
worker processes sharing one portal. Bulk traffic (campaigns) may only use
``1 - interactive_reserve`` of either limit, so a campaign never makes a person wait.

We keep our own bucket instead of pyrate-limiter or limits because neither models a
leaky bucket with a reserved share for one class of traffic, nor a budget whose level
the server reports back.

Docs: https://apidocs.bitrix24.com/limits.html
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

BATCH_SIZE = 50
# A granted request not reported within this many seconds failed or was never sent; it stops
# counting against the budget (twice the default B24_REQUEST_TIMEOUT).
IN_FLIGHT_TTL_S = 60.0
# More unreported requests than this are lost ones: the budget stops granting long before.
MAX_IN_FLIGHT = 64
# How long a request waits for the replies of those in flight when only they are in its way.
PROBE_WAIT_S = 0.25
# operating_reset_at comes in whole seconds, so the oldest usage may stay up to a second
# longer than it says.
RESET_SLACK_S = 1.0


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
    """One method's execution time: ``used_s`` as last reported, until ``reset_at``.

    ``request_cost_s`` is what one request of the method was last measured to cost (0 while
    unknown), ``in_flight`` the grant times (ascending) of requests not reported yet.
    """

    used_s: float = 0.0
    reset_at: float = 0.0
    request_cost_s: float = 0.0
    in_flight: tuple[float, ...] = ()

    def flying(self, now: float, ttl_s: float = IN_FLIGHT_TTL_S) -> tuple[float, ...]:
        """The grant times of requests still in flight at ``now``; older ones were lost."""
        return tuple(t for t in self.in_flight if t > now - ttl_s)

    def as_row(self) -> list[Any]:
        """The JSON form the stores keep: ``[used_s, reset_at, request_cost_s, in_flight]``."""
        return [self.used_s, self.reset_at, self.request_cost_s, list(self.in_flight)]

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> OperatingState:
        """Read :meth:`as_row`'s form, or the older ``[used_s, reset_at]``."""
        return cls(
            used_s=float(row[0]),
            reset_at=float(row[1]),
            request_cost_s=float(row[2]) if len(row) > 2 else 0.0,
            in_flight=tuple(sorted(float(t) for t in row[3])) if len(row) > 3 else (),
        )


def observe(
    state: OperatingState,
    *,
    operating: float | None,
    operating_reset_at: int | None,
    now: float,
    limits: Limits | None = None,
    request_cost_s: float | None = None,
) -> OperatingState:
    """Fold one reply's ``time.operating``/``operating_reset_at`` into ``state``.

    Bitrix reports the running total over its window, not the cost of this call, so the
    reported value replaces ours rather than adding to it. Replies from parallel workers
    can arrive out of order: one with an older ``operating_reset_at`` is ignored, and for
    the same window the larger total wins. Without ``operating_reset_at`` the total is
    assumed to stay for a whole window from ``now``.

    Every reply, even one without ``operating``, ends one request in flight; replies carry
    no request id, so the oldest entry goes. ``request_cost_s`` is a new measurement of
    what one request costs (None keeps the last one). Once that is known, a reply whose
    ``operating_reset_at`` has already passed shows the oldest usage had not dropped out
    yet (the time is rounded down to a second), so it is taken to go a second later.
    """
    state = replace(state, in_flight=state.in_flight[1:])
    if request_cost_s is not None and request_cost_s > 0:
        state = replace(state, request_cost_s=request_cost_s)
    if operating is None:
        return state
    window = (limits or Limits()).op_window_s
    reset_at = float(operating_reset_at) if operating_reset_at is not None else now + window
    if state.request_cost_s > 0 and reset_at <= now:
        reset_at += RESET_SLACK_S
    current = state.reset_at > now
    if current and reset_at < state.reset_at:
        return state
    if current and reset_at == state.reset_at:
        return replace(state, used_s=max(state.used_s, operating))
    return replace(state, used_s=operating, reset_at=reset_at)


def budget_wait(
    state: OperatingState,
    now: float,
    limits: Limits,
    *,
    interactive: bool,
    in_flight_ttl_s: float = IN_FLIGHT_TTL_S,
) -> float:
    """Seconds to wait before calling the method again; 0 when within its budget.

    While a request's cost is unknown, only the last report counts: the method waits once
    it reached the cap, until ``reset_at``. Once ``reset_at`` passes, the oldest minute of
    usage has dropped out; how much that frees is unknown until the next reply, so every
    call is let through and :func:`observe` takes its report (Bitrix lets a call that
    crosses the limit finish, spec §4.2).

    With a known cost, each request in flight counts as that cost on top of the report, and
    a request goes only if the total after it stays within the cap. Short of that it waits
    :data:`PROBE_WAIT_S` when only requests in flight are in the way (their replies may
    show room), else until ``reset_at``. After ``reset_at`` the report over-states the
    usage, so the same test still grants safely; failing it, one probe goes at a time.
    """
    cap = limits.budget_cap(interactive=interactive)
    cost = state.request_cost_s
    if cost <= 0:
        if now >= state.reset_at or state.used_s < cap:
            return 0.0
        return state.reset_at - now
    flying = state.flying(now, in_flight_ttl_s)
    if state.used_s + (len(flying) + 1) * cost <= cap:
        return 0.0
    if now < state.reset_at:
        return PROBE_WAIT_S if state.used_s + cost <= cap else state.reset_at - now
    return PROBE_WAIT_S if flying else 0.0


def batch_cost_s(reports: Sequence[tuple[float, int | None]]) -> float | None:
    """What one batch cost, from its sub-calls' ``(operating, operating_reset_at)``.

    Sub-calls run one after another and each reports the running total after it, so over
    the n that report, the spread between the highest and lowest total is the cost of n - 1
    of them. Where the oldest bucket dropped out mid-batch the totals fall back, so the
    spread is taken among the sub-calls sharing the most common ``operating_reset_at``.
    None when fewer than two of them report (one total alone says nothing about cost).
    """
    groups: dict[int | None, list[float]] = {}
    for operating, reset_at in reports:
        groups.setdefault(reset_at, []).append(operating)
    if not groups:
        return None
    same = max(groups.values(), key=len)
    if len(same) < 2:
        return None
    return (max(same) - min(same)) / (len(same) - 1) * len(reports)


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
        *,
        request_cost_s: float | None = None,
    ) -> None:
        """Remember what a reply said about ``method``'s execution time (see :func:`observe`)."""
        ...


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`decide`: ``wait`` 0.0 when granted, and the state to save."""

    bucket: BucketState
    budgets: dict[str, OperatingState]
    wait: float


def decide(
    bucket: BucketState,
    budgets: dict[str, OperatingState],
    now: float,
    limits: Limits,
    *,
    interactive: bool,
    method: str | None,
    in_flight_ttl_s: float = IN_FLIGHT_TTL_S,
) -> Decision:
    """One acquire decision for any store: the method budget(s) first, then the bucket.

    On a grant (``wait == 0.0``) the store saves the returned bucket and budgets, in which
    ``method`` has one more request in flight; otherwise they come back unchanged.
    ``budgets`` maps method names to their state; with ``method=None`` the worst of them
    counts and nothing is marked in flight. Stores call this under their own lock.
    """
    if method is not None:
        relevant = [budgets[method]] if method in budgets else []
    else:
        relevant = list(budgets.values())
    budget = max(
        (
            budget_wait(s, now, limits, interactive=interactive, in_flight_ttl_s=in_flight_ttl_s)
            for s in relevant
        ),
        default=0.0,
    )
    if budget > 0:
        return Decision(bucket, budgets, budget)
    new_bucket, wait = take(bucket, now, limits, interactive=interactive)
    if wait > 0 or method is None:
        return Decision(new_bucket, budgets, wait)
    state = budgets.get(method, OperatingState())
    flying = sorted((*state.flying(now, in_flight_ttl_s), now))[-MAX_IN_FLIGHT:]
    granted = replace(state, in_flight=tuple(flying))
    return Decision(new_bucket, {**budgets, method: granted}, 0.0)


# The first draft's private name.
_acquire = decide


class MemoryPacerStore:
    """A thread-safe in-process :class:`PacerStore` (one process, tests, the sandbox)."""

    def __init__(
        self,
        limits_for: Callable[[str], Limits] | None = None,
        *,
        in_flight_ttl_s: float = IN_FLIGHT_TTL_S,
    ) -> None:
        self._limits_for = limits_for or (lambda _key: Limits())
        self._in_flight_ttl_s = in_flight_ttl_s
        self._lock = threading.Lock()
        self._buckets: dict[str, BucketState] = {}
        self._budgets: dict[str, dict[str, OperatingState]] = {}

    def acquire(
        self, key: str, now: float, *, interactive: bool, method: str | None = None
    ) -> float:
        """See :meth:`PacerStore.acquire`."""
        limits = self._limits_for(key)
        with self._lock:
            decision = decide(
                self._buckets.get(key, BucketState()),
                self._budgets.get(key, {}),
                now,
                limits,
                interactive=interactive,
                method=method,
                in_flight_ttl_s=self._in_flight_ttl_s,
            )
            if decision.wait == 0.0:
                self._buckets[key] = decision.bucket
                self._budgets[key] = decision.budgets
            return decision.wait

    def record_operating(
        self,
        key: str,
        method: str,
        operating: float | None,
        operating_reset_at: int | None,
        now: float,
        *,
        request_cost_s: float | None = None,
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
                request_cost_s=request_cost_s,
            )


class RedisPacerStore:
    """A :class:`PacerStore` in Redis, shared by every process that sends for a portal.

    Each update is a WATCH/MULTI transaction that reruns when another process changed the
    same keys in between, so the arithmetic stays in the pure functions above (no second
    copy in Lua). Keys expire once the state they hold has drained away. A method's state
    is the JSON of :meth:`OperatingState.as_row`; the older ``"used,reset"`` still reads.
    """

    def __init__(
        self,
        redis_client: Any,
        limits_for: Callable[[str], Limits],
        *,
        prefix: str = "b24app:pacer:",
        in_flight_ttl_s: float = IN_FLIGHT_TTL_S,
    ) -> None:
        # Typed Any: redis.Redis and redis.cluster.RedisCluster both fit, and redis-py's
        # generics differ by decode_responses.
        self._redis = redis_client
        self._limits_for = limits_for
        self._prefix = prefix
        self._in_flight_ttl_s = in_flight_ttl_s

    def _keys(self, key: str) -> tuple[str, str]:
        return f"{self._prefix}{key}:bucket", f"{self._prefix}{key}:operating"

    @staticmethod
    def _text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    @classmethod
    def _state(cls, value: Any) -> OperatingState:
        text = cls._text(value)
        if text.startswith("["):
            return OperatingState.from_row(json.loads(text))
        return OperatingState.from_row(text.split(","))

    def _budgets(self, raw: dict[Any, Any]) -> dict[str, OperatingState]:
        return {self._text(name): self._state(value) for name, value in raw.items()}

    def _expire_operating(self, pipe: Any, operating_key: str, limits: Limits) -> None:
        # reset_at is at most one window ahead, so two windows outlive every entry (and an
        # in-flight mark outlives its TTL).
        ttl = max(2 * limits.op_window_s, self._in_flight_ttl_s)
        pipe.expire(operating_key, math.ceil(ttl))

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
            decision = decide(
                bucket,
                self._budgets(pipe.hgetall(operating_key)),
                now,
                limits,
                interactive=interactive,
                method=method,
                in_flight_ttl_s=self._in_flight_ttl_s,
            )
            outcome.append(decision.wait)
            if decision.wait > 0:
                return
            state = decision.bucket
            pipe.multi()
            pipe.hset(bucket_key, mapping={"level": state.level, "updated_at": state.updated_at})
            # Once drained the bucket is empty, which is what a missing key means.
            pipe.expire(bucket_key, max(1, math.ceil(state.level / limits.rate) + 1))
            if method is not None:
                row = json.dumps(decision.budgets[method].as_row())
                pipe.hset(operating_key, method, row)
                self._expire_operating(pipe, operating_key, limits)

        self._redis.transaction(attempt, bucket_key, operating_key)
        return outcome[0]

    def record_operating(
        self,
        key: str,
        method: str,
        operating: float | None,
        operating_reset_at: int | None,
        now: float,
        *,
        request_cost_s: float | None = None,
    ) -> None:
        """See :meth:`PacerStore.record_operating`."""
        limits = self._limits_for(key)
        _, operating_key = self._keys(key)

        def attempt(pipe: Any) -> None:
            raw = pipe.hget(operating_key, method)
            state = OperatingState() if raw is None else self._state(raw)
            new = observe(
                state,
                operating=operating,
                operating_reset_at=operating_reset_at,
                now=now,
                limits=limits,
                request_cost_s=request_cost_s,
            )
            if new == state:
                return
            pipe.multi()
            pipe.hset(operating_key, method, json.dumps(new.as_row()))
            self._expire_operating(pipe, operating_key, limits)

        self._redis.transaction(attempt, operating_key)
