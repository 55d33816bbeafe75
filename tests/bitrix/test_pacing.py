from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b24app.bitrix import pacing
from b24app.bitrix.pacing import BucketState, Limits, OperatingState

# The reserve these tests reason about (20 %), independent of the default.
LIMITS = Limits(interactive_reserve=0.2)
T0 = 1_773_740_000.0


def fill(
    state: BucketState, now: float, *, interactive: bool, limits: Limits = LIMITS
) -> tuple[BucketState, int]:
    granted = 0
    while True:
        new, wait = pacing.take(state, now, limits, interactive=interactive)
        if wait > 0:
            return state, granted
        state, granted = new, granted + 1


# --- request bucket ----------------------------------------------------------------------


def test_interactive_traffic_gets_the_whole_burst():
    _, granted = fill(BucketState(), T0, interactive=True)

    assert granted == 50


def test_bulk_traffic_stops_at_the_reserve():
    _, granted = fill(BucketState(), T0, interactive=False)

    assert granted == 40


def test_campaign_at_full_speed_leaves_room_for_every_interactive_message():
    state, _ = fill(BucketState(), T0, interactive=False)

    state, granted = fill(state, T0, interactive=True)

    assert granted == 10


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(st.floats(min_value=0, max_value=5), min_size=1, max_size=200), st.floats(0, 5))
def test_interactive_message_never_waits_behind_bulk(gaps, last_gap):
    state, now = BucketState(), T0
    for gap in gaps:
        now += gap
        new, wait = pacing.take(state, now, LIMITS, interactive=False)
        if wait == 0:
            state = new

    _, wait = pacing.take(state, now + last_gap, LIMITS, interactive=True)

    assert wait == 0


def test_refusal_names_the_wait_and_leaves_the_state_alone():
    state, _ = fill(BucketState(), T0, interactive=True)

    same, wait = pacing.take(state, T0, LIMITS, interactive=True)

    assert same == state
    assert wait == pytest.approx(0.5)  # one request drains in 1 / 2 req/s


def test_bucket_drains_at_the_rate():
    state, _ = fill(BucketState(), T0, interactive=True)

    state, wait = pacing.take(state, T0 + 0.5, LIMITS, interactive=True)

    assert wait == 0
    assert state.level == pytest.approx(50)
    assert pacing.drained(state, T0 + 10.5, LIMITS) == pytest.approx(30)


def test_sustained_rate_is_two_per_second_after_the_burst():
    state, _ = fill(BucketState(), T0, interactive=True)
    granted = 0
    now = T0
    while now < T0 + 10:
        now += 0.05
        new, wait = pacing.take(state, now, LIMITS, interactive=True)
        if wait == 0:
            state, granted = new, granted + 1

    assert granted == pytest.approx(20, abs=1)


def test_clock_going_backwards_drains_nothing():
    state = BucketState(level=50, updated_at=T0)

    _, wait = pacing.take(state, T0 - 100, LIMITS, interactive=True)

    assert wait == pytest.approx(0.5)


def test_cost_larger_than_the_bucket_is_an_error():
    with pytest.raises(ValueError):
        pacing.take(BucketState(), T0, LIMITS, cost=41, interactive=False)


def test_enterprise_plan_has_a_bigger_bucket():
    _, granted = fill(BucketState(), T0, interactive=True, limits=pacing.ENTERPRISE)

    assert granted == 250


# --- execution-time budget ---------------------------------------------------------------


def test_observe_takes_the_reported_running_total():
    state = pacing.observe(
        OperatingState(), operating=12.5, operating_reset_at=int(T0) + 300, now=T0
    )
    state = pacing.observe(state, operating=13.0, operating_reset_at=int(T0) + 300, now=T0 + 1)

    assert state == OperatingState(used_s=13.0, reset_at=T0 + 300)


def test_observe_ignores_a_reply_from_an_older_window():
    state = OperatingState(used_s=100.0, reset_at=T0 + 300)

    assert pacing.observe(state, operating=5.0, operating_reset_at=int(T0) + 200, now=T0) == state


def test_observe_keeps_the_larger_total_for_the_same_window():
    state = OperatingState(used_s=100.0, reset_at=T0 + 300)

    later = pacing.observe(state, operating=90.0, operating_reset_at=int(T0) + 300, now=T0)

    assert later.used_s == 100.0


def test_observe_starts_over_once_the_window_moved_on():
    state = OperatingState(used_s=400.0, reset_at=T0 + 10)

    later = pacing.observe(state, operating=350.0, operating_reset_at=int(T0) + 70, now=T0 + 11)

    assert later == OperatingState(used_s=350.0, reset_at=T0 + 70)


def test_observe_without_operating_changes_nothing():
    state = OperatingState(used_s=1.0, reset_at=T0 + 5)

    assert pacing.observe(state, operating=None, operating_reset_at=None, now=T0) == state


def test_observe_without_reset_time_assumes_a_whole_window():
    state = pacing.observe(OperatingState(), operating=3.0, operating_reset_at=None, now=T0)

    assert state.reset_at == T0 + 600


def test_bulk_pauses_at_eighty_percent_of_the_budget_until_reset():
    state = OperatingState(used_s=390.0, reset_at=T0 + 120)

    assert pacing.budget_wait(state, T0, LIMITS, interactive=False) == pytest.approx(120)
    assert pacing.budget_wait(state, T0, LIMITS, interactive=True) == 0


def test_interactive_pauses_only_at_the_full_budget():
    state = OperatingState(used_s=480.0, reset_at=T0 + 30)

    assert pacing.budget_wait(state, T0, LIMITS, interactive=True) == pytest.approx(30)


def test_budget_wait_is_zero_once_the_window_reset():
    state = OperatingState(used_s=1000.0, reset_at=T0)

    assert pacing.budget_wait(state, T0, LIMITS, interactive=False) == 0


# --- planning arithmetic -----------------------------------------------------------------


def test_ceiling_is_the_lower_of_rate_and_budget():
    assert pacing.ceiling_msgs_per_s(LIMITS, cost_s=0.2) == pytest.approx(4.0)
    assert pacing.ceiling_msgs_per_s(LIMITS, cost_s=0.001) == pytest.approx(100.0)
    assert pacing.ceiling_msgs_per_s(LIMITS, cost_s=0) == pytest.approx(100.0)


def test_t_min_follows_the_binding_limit():
    assert pacing.t_min(10_000, LIMITS, cost_s=0.2) == pytest.approx((2000 - 480) / 0.8)
    assert pacing.t_min(10_000, LIMITS, cost_s=0.0) == pytest.approx((200 - 50) / 2)
    assert pacing.t_min(100, LIMITS, cost_s=0.2) == 0


# --- stores ------------------------------------------------------------------------------


def exercise_store_semantics(store: pacing.PacerStore, key: str) -> None:
    waits = [store.acquire(key, T0, interactive=False) for _ in range(41)]
    assert waits[:40] == [0.0] * 40
    assert waits[40] == pytest.approx(0.5)
    assert store.acquire(key, T0, interactive=True) == 0.0

    store.record_operating(key, "imopenlines.network.message.add", 400.0, int(T0) + 90, T0)
    assert store.acquire(
        key, T0 + 60, interactive=False, method="imopenlines.network.message.add"
    ) == pytest.approx(30)
    assert store.acquire(key, T0 + 60, interactive=False, method="user.get") == 0.0
    assert store.acquire(key, T0 + 60, interactive=False) == pytest.approx(30)
    assert store.acquire(key, T0 + 60, interactive=True) == 0.0
    assert store.acquire(key, T0 + 91, interactive=False) == 0.0


def exercise_concurrency(make_store: Callable[[], pacing.PacerStore], key: str) -> None:
    granted: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        store = make_store()
        for _ in range(20):
            wait = store.acquire(key, T0, interactive=False)
            with lock:
                granted.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert granted.count(0.0) == 40


def test_memory_store_paces_bucket_and_budget():
    exercise_store_semantics(pacing.MemoryPacerStore(lambda _key: LIMITS), "portal-a")


def test_memory_store_is_thread_safe():
    store = pacing.MemoryPacerStore(lambda _key: LIMITS)

    exercise_concurrency(lambda: store, "portal-a")


def test_memory_store_keeps_portals_apart():
    store = pacing.MemoryPacerStore(lambda _key: LIMITS)
    for _ in range(40):
        store.acquire("portal-a", T0, interactive=False)

    assert store.acquire("portal-b", T0, interactive=False) == 0.0


def test_memory_store_uses_per_portal_limits():
    store = pacing.MemoryPacerStore(lambda key: pacing.ENTERPRISE if key == "big" else LIMITS)

    assert sum(store.acquire("big", T0, interactive=True) == 0 for _ in range(300)) == 250


# --- Redis -------------------------------------------------------------------------------

REDIS_URL = "redis://127.0.0.1:6379/15"


def _redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_store_factory() -> Iterator[Callable[[], pacing.RedisPacerStore]]:
    if not _redis_reachable():
        pytest.skip("Redis is not reachable at redis://127.0.0.1:6379")
    import redis

    prefix = f"test:pacer:{uuid.uuid4().hex}:"
    clients: list[Any] = []

    def make() -> pacing.RedisPacerStore:
        connection = redis.Redis.from_url(REDIS_URL)
        clients.append(connection)
        return pacing.RedisPacerStore(connection, lambda _key: LIMITS, prefix=prefix)

    yield make
    cleaner = redis.Redis.from_url(REDIS_URL)
    for found in cleaner.scan_iter(f"{prefix}*"):
        cleaner.delete(found)
    for connection in [*clients, cleaner]:
        connection.close()


@pytest.mark.redis
def test_redis_store_paces_bucket_and_budget(redis_store_factory):
    exercise_store_semantics(redis_store_factory(), "portal-a")


@pytest.mark.redis
def test_redis_store_is_shared_by_processes(redis_store_factory):
    exercise_concurrency(redis_store_factory, "portal-a")


@pytest.mark.redis
def test_redis_store_drains_like_the_pure_bucket(redis_store_factory):
    store = redis_store_factory()
    for _ in range(50):
        store.acquire("portal-a", T0, interactive=True)

    assert store.acquire("portal-a", T0, interactive=True) == pytest.approx(0.5)
    assert store.acquire("portal-a", T0 + 0.5, interactive=True) == 0.0


@pytest.mark.redis
def test_redis_store_works_with_decoded_responses(redis_store_factory):
    import redis

    store = redis_store_factory()
    decoded = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        other = pacing.RedisPacerStore(decoded, lambda _key: LIMITS, prefix=store._prefix)
        store.acquire("portal-a", T0, interactive=True)
        store.record_operating("portal-a", "user.get", 1.5, int(T0) + 60, T0)

        assert other.acquire("portal-a", T0, interactive=True) == 0.0
        other.record_operating("portal-a", "user.get", 2.0, int(T0) + 60, T0)
    finally:
        decoded.close()
