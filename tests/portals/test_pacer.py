from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from b24app.bitrix.replies import CallTime
from b24app.portals import pacer
from b24app.portals.models import Portal
from tests.conftest import port_open

METHOD = "imopenlines.network.message.add"


@pytest.fixture(params=["db", "redis"])
def store_kind(request: Any, settings: Any) -> str:
    if request.param == "redis":
        url = os.environ.get("B24_PACER_REDIS_URL") or "redis://127.0.0.1:6379/15"
        request.applymarker(pytest.mark.redis)
        if not port_open("127.0.0.1", 6379):
            pytest.skip("Redis is not running on 127.0.0.1:6379")
        import redis

        redis.Redis.from_url(url).flushdb()
        settings.B24_PACER_REDIS_URL = url
    else:
        settings.B24_PACER_REDIS_URL = ""
    return str(request.param)


@pytest.mark.django_db
def test_bulk_traffic_leaves_the_top_of_the_bucket_for_people(
    store_kind: str, make_portal: Callable[..., Portal]
):
    portal = make_portal(rate=0.001, burst=50)

    bulk = sum(pacer.pacer_acquire(portal=portal, interactive=False) == 0 for _ in range(60))
    people = sum(pacer.pacer_acquire(portal=portal, interactive=True) == 0 for _ in range(20))

    assert bulk == 47  # 94 % of the burst
    assert people == 3  # the reserved 6 %


@pytest.mark.django_db
def test_a_refused_request_is_told_how_long_to_wait(
    store_kind: str, make_portal: Callable[..., Portal]
):
    portal = make_portal(rate=0.5, burst=5)
    for _ in range(5):
        pacer.pacer_acquire(portal=portal, interactive=True)

    wait = pacer.pacer_acquire(portal=portal, interactive=True)

    assert 1.0 < wait <= 2.0  # one request drains in 2 s; less whatever time passed


@pytest.mark.django_db
def test_a_spent_execution_budget_pauses_bulk_sending_until_it_resets(
    store_kind: str, make_portal: Callable[..., Portal], settings: Any
):
    settings.B24_OP_BUDGET_S = 10.0
    portal = make_portal(rate=100.0, burst=50)
    reset_at = int(time.time()) + 120
    pacer.pacer_record(
        portal=portal,
        method=METHOD,
        call_time=CallTime(
            start=0, finish=0, duration=0, processing=0, operating=9.8, operating_reset_at=reset_at
        ),
    )

    wait = pacer.pacer_acquire(portal=portal, interactive=False, method=METHOD)

    assert 110 < wait <= 120
    assert pacer.pacer_acquire(portal=portal, interactive=True, method=METHOD) == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_never_take_more_than_the_burst(
    store_kind: str, make_portal: Callable[..., Portal]
):
    portal = make_portal(rate=0.001, burst=30)
    granted: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            for _ in range(10):
                ok = pacer.pacer_acquire(portal=portal, interactive=True) == 0
                with lock:
                    granted.append(ok)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(granted) == 60
    assert sum(granted) == 30
