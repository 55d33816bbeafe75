"""The per-portal pacer shared by every process: request bucket and execution budget.

The arithmetic lives in `bitrix.pacing`; this module keeps the state, either in the database
(`PacerState`, one row per portal taken with a row lock, the default) or in Redis when
`B24_PACER_REDIS_URL` is set. Callers never sleep for a token: they get the seconds to wait
and re-enqueue themselves with that countdown.
"""

from __future__ import annotations

import time
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


class DbPacerStore:
    """`PacerStore` on the portal's `PacerState` row, locked for each decision."""

    def acquire(
        self, key: str, now: float, *, interactive: bool, method: str | None = None
    ) -> float:
        limits = _limits_by_key(key)
        PacerState.objects.get_or_create(portal_id=int(key))
        with transaction.atomic():
            row = PacerState.objects.select_for_update().get(portal_id=int(key))
            budgets = {
                m: pacing.OperatingState(used_s=float(v[0]), reset_at=float(v[1]))
                for m, v in row.budgets.items()
            }
            bucket = pacing.BucketState(level=row.level, updated_at=row.updated_at)
            new, wait = pacing.decide(
                bucket, budgets, now, limits, interactive=interactive, method=method
            )
            if wait == 0.0:
                row.level, row.updated_at = new.level, new.updated_at
                row.save(update_fields=["level", "updated_at"])
            return wait

    def record_operating(
        self,
        key: str,
        method: str,
        operating: float | None,
        operating_reset_at: int | None,
        now: float,
    ) -> None:
        if operating is None:
            return
        limits = _limits_by_key(key)
        PacerState.objects.get_or_create(portal_id=int(key))
        with transaction.atomic():
            row = PacerState.objects.select_for_update().get(portal_id=int(key))
            old = row.budgets.get(method, [0.0, 0.0])
            state = pacing.observe(
                pacing.OperatingState(used_s=float(old[0]), reset_at=float(old[1])),
                operating=operating,
                operating_reset_at=operating_reset_at,
                now=now,
                limits=limits,
            )
            row.budgets = {**row.budgets, method: [state.used_s, state.reset_at]}
            row.save(update_fields=["budgets"])


@cache
def _store(redis_url: str) -> pacing.PacerStore:
    if redis_url:
        import redis

        return pacing.RedisPacerStore(redis.Redis.from_url(redis_url), _limits_by_key)
    return DbPacerStore()


def store() -> pacing.PacerStore:
    return _store(settings.B24_PACER_REDIS_URL)


def pacer_acquire(*, portal: Portal, interactive: bool, method: str | None = None) -> float:
    """Take one request token for the portal: 0.0 when taken, else the seconds to wait."""
    return store().acquire(str(portal.pk), time.time(), interactive=interactive, method=method)


def pacer_record(*, portal: Portal, method: str, call_time: CallTime | None) -> None:
    """Charge what Bitrix reported about `method`'s execution time to the portal's budget."""
    if call_time is None:
        return
    store().record_operating(
        str(portal.pk), method, call_time.operating, call_time.operating_reset_at, time.time()
    )
