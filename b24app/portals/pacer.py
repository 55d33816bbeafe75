"""The per-portal pacer shared by every process: request bucket and execution budget.

The arithmetic lives in `bitrix.pacing`; this module keeps the state, either in the database
(`PacerState`, one row per portal taken with a row lock, the default) or in Redis when
`B24_PACER_REDIS_URL` is set. Callers never sleep for a token: they get the seconds to wait
and re-enqueue themselves with that countdown.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cache

from django.conf import settings
from django.db import transaction

from b24app.bitrix import pacing
from b24app.bitrix.replies import CallTime
from b24app.portals.models import PacerState, Portal


def limits_for(portal: Portal) -> pacing.Limits:
    """The portal's limits: its plan overrides, else the settings' defaults."""
    return pacing.Limits(
        rate=portal.rate or settings.B24_RATE,
        burst=portal.burst or settings.B24_BURST,
        op_budget_s=settings.B24_OP_BUDGET_S,
        op_window_s=settings.B24_OP_WINDOW_S,
    )


def _limits_by_key(key: str) -> pacing.Limits:
    portal = Portal.objects.filter(pk=int(key)).only("rate", "burst").first()
    return limits_for(portal) if portal else pacing.Limits()


def _in_flight_ttl_s() -> float:
    """A request is surely over after twice its timeout; unreported by then, it was lost."""
    return 2 * float(settings.B24_REQUEST_TIMEOUT)


class DbPacerStore:
    """`PacerStore` on the portal's `PacerState` row, locked for each decision.

    `budgets` maps a method to `OperatingState.as_row()`; rows of the older `[used_s,
    reset_at]` form still read.
    """

    def acquire(
        self, key: str, now: float, *, interactive: bool, method: str | None = None
    ) -> float:
        limits = _limits_by_key(key)
        PacerState.objects.get_or_create(portal_id=int(key))
        with transaction.atomic():
            row = PacerState.objects.select_for_update().get(portal_id=int(key))
            budgets = {m: pacing.OperatingState.from_row(v) for m, v in row.budgets.items()}
            decision = pacing.decide(
                pacing.BucketState(level=row.level, updated_at=row.updated_at),
                budgets,
                now,
                limits,
                interactive=interactive,
                method=method,
                in_flight_ttl_s=_in_flight_ttl_s(),
            )
            if decision.wait == 0.0:
                row.level, row.updated_at = decision.bucket.level, decision.bucket.updated_at
                fields = ["level", "updated_at"]
                if method is not None:
                    row.budgets = {**row.budgets, method: decision.budgets[method].as_row()}
                    fields.append("budgets")
                row.save(update_fields=fields)
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
        limits = _limits_by_key(key)
        PacerState.objects.get_or_create(portal_id=int(key))
        with transaction.atomic():
            row = PacerState.objects.select_for_update().get(portal_id=int(key))
            old = row.budgets.get(method)
            before = pacing.OperatingState() if old is None else pacing.OperatingState.from_row(old)
            state = pacing.observe(
                before,
                operating=operating,
                operating_reset_at=operating_reset_at,
                now=now,
                limits=limits,
                request_cost_s=request_cost_s,
            )
            if state != before:
                row.budgets = {**row.budgets, method: state.as_row()}
                row.save(update_fields=["budgets"])


@cache
def _store(redis_url: str) -> pacing.PacerStore:
    if redis_url:
        import redis

        return pacing.RedisPacerStore(
            redis.Redis.from_url(redis_url), _limits_by_key, in_flight_ttl_s=_in_flight_ttl_s()
        )
    return DbPacerStore()


def store() -> pacing.PacerStore:
    return _store(settings.B24_PACER_REDIS_URL)


def pacer_acquire(*, portal: Portal, interactive: bool, method: str | None = None) -> float:
    """Take one request token for the portal: 0.0 when taken, else the seconds to wait."""
    return store().acquire(str(portal.pk), time.time(), interactive=interactive, method=method)


def pacer_record(*, portal: Portal, method: str, call_time: CallTime | None) -> None:
    """Charge what Bitrix reported about `method`'s execution time to the portal's budget.

    Also ends one of the method's requests in flight, even when the reply had no `time`.
    """
    store().record_operating(
        str(portal.pk),
        method,
        call_time.operating if call_time else None,
        call_time.operating_reset_at if call_time else None,
        time.time(),
    )


def pacer_record_batch(*, portal: Portal, method: str, times: Sequence[CallTime]) -> None:
    """`pacer_record` for one `batch` of `method` calls, from its sub-calls' `result_time`.

    The latest running total is charged (the highest of the newest window), and the spread
    of the totals measures what the batch cost (`pacing.batch_cost_s`), so the pacer can
    count the batches still in flight. Bitrix may leave `operating` out of sub-call times
    (spec §3.4); then only the request in flight ends.
    """
    reports = [(t.operating, t.operating_reset_at) for t in times if t.operating is not None]
    latest = max(reports, key=lambda r: (r[1] or 0, r[0]), default=(None, None))
    store().record_operating(
        str(portal.pk),
        method,
        latest[0],
        latest[1],
        time.time(),
        request_cost_s=pacing.batch_cost_s(reports),
    )
