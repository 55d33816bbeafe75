from __future__ import annotations

import heapq
import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
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


# --- requests in flight -----------------------------------------------------------------

# The benchmark's plan: 48 s per 60 s window, so bulk traffic may use 45.12 s of it.
BUDGET = Limits(rate=100.0, burst=500, op_budget_s=48.0, op_window_s=60.0)
SEND = "imopenlines.network.message.add"


def lanes_ask(
    budgets: dict[str, OperatingState], now: float, lanes: int = 6, *, interactive: bool = False
) -> tuple[dict[str, OperatingState], list[float]]:
    """Every lane asks once at ``now``; returns the budgets afterwards and each lane's wait."""
    bucket, waits = BucketState(), []
    for _ in range(lanes):
        decision = pacing.decide(bucket, budgets, now, BUDGET, interactive=interactive, method=SEND)
        if decision.wait == 0:
            bucket, budgets = decision.bucket, decision.budgets
        waits.append(decision.wait)
    return budgets, waits


def test_six_lanes_near_the_cap_get_only_the_grant_that_fits():
    budgets = {SEND: OperatingState(used_s=44.0, reset_at=T0 + 30, request_cost_s=1.0)}

    budgets, waits = lanes_ask(budgets, T0)

    assert waits.count(0.0) == 1  # 44 + 1 fits under 45.12; a second batch would not
    assert waits[1:] == [pacing.PROBE_WAIT_S] * 5  # the first one's reply may show room
    assert budgets[SEND].in_flight == (T0,)


def test_lanes_wait_for_the_reset_once_the_report_alone_fills_the_cap():
    budgets = {SEND: OperatingState(used_s=44.5, reset_at=T0 + 30, request_cost_s=1.0)}

    _, waits = lanes_ask(budgets, T0)

    assert waits == [pytest.approx(30)] * 6


def test_replies_free_their_share_for_the_next_lanes():
    budgets = {SEND: OperatingState(used_s=40.0, reset_at=T0 + 30, request_cost_s=1.0)}
    budgets, waits = lanes_ask(budgets, T0)
    assert waits.count(0.0) == 5  # 40 + 5 in flight = 45

    # One batch reports; the window moved on meanwhile and the total fell to 38 s.
    budgets = {
        SEND: pacing.observe(
            budgets[SEND], operating=38.0, operating_reset_at=int(T0) + 36, now=T0 + 1
        )
    }
    _, waits = lanes_ask(budgets, T0 + 1)

    assert waits.count(0.0) == 3  # 38 + 4 still in flight + 3 new = 45


def test_after_the_reset_only_one_probe_goes_until_its_reply_arrives():
    state = OperatingState(used_s=45.0, reset_at=T0, request_cost_s=1.0)
    now = T0

    budgets, waits = lanes_ask({SEND: state}, now)

    assert waits == [0.0] + [pacing.PROBE_WAIT_S] * 5
    _, waits = lanes_ask(budgets, now + 0.5)
    assert waits == [pacing.PROBE_WAIT_S] * 6

    # The probe reports: the oldest 6 s dropped out and it added its own second.
    probed = pacing.observe(
        budgets[SEND], operating=40.0, operating_reset_at=int(T0) + 6, now=now + 0.5
    )
    _, waits = lanes_ask({SEND: probed}, now + 0.5)

    assert waits.count(0.0) == 5


def test_a_probe_answered_from_the_old_window_waits_a_second_more():
    budgets, _ = lanes_ask({SEND: OperatingState(45.0, T0, request_cost_s=1.0)}, T0 + 0.2)

    # operating_reset_at is rounded down: the oldest bucket had not dropped out yet.
    probed = pacing.observe(budgets[SEND], operating=46.0, operating_reset_at=int(T0), now=T0 + 0.4)

    assert lanes_ask({SEND: probed}, T0 + 0.4)[1] == [pytest.approx(0.6)] * 6
    assert lanes_ask({SEND: probed}, T0 + 1)[1] == [0.0] + [pacing.PROBE_WAIT_S] * 5


def test_an_unreported_request_stops_counting_after_its_ttl():
    state = OperatingState(
        used_s=43.0, reset_at=T0 + 600, request_cost_s=1.0, in_flight=(T0, T0 + 1)
    )

    _, early = lanes_ask({SEND: state}, T0 + 30, lanes=1)
    budgets, late = lanes_ask({SEND: state}, T0 + 60.5, lanes=1)

    assert early == [pacing.PROBE_WAIT_S]  # 43 + 2 in flight + 1 > 45.12
    assert late == [0.0]  # the first is lost: 43 + 1 + 1
    assert budgets[SEND].in_flight == (T0 + 1, T0 + 60.5)


def test_unknown_cost_lets_every_lane_through_below_the_cap_as_before():
    budgets = {SEND: OperatingState(used_s=44.0, reset_at=T0 + 30)}

    budgets, waits = lanes_ask(budgets, T0)

    assert waits == [0.0] * 6
    assert len(budgets[SEND].in_flight) == 6  # counted once a reply measures the cost
    spent = {SEND: OperatingState(used_s=46.0, reset_at=T0 + 30)}
    assert lanes_ask(spent, T0)[1] == [pytest.approx(30)] * 6
    assert lanes_ask(spent, T0 + 30)[1] == [0.0] * 6


def test_people_keep_their_reserve_while_bulk_batches_are_in_flight():
    budgets = {SEND: OperatingState(used_s=40.0, reset_at=T0 + 30, request_cost_s=1.0)}
    budgets, _ = lanes_ask(budgets, T0)

    _, waits = lanes_ask(budgets, T0, lanes=1, interactive=True)

    assert waits == [0.0]


def test_a_request_without_a_method_is_not_marked_in_flight():
    budgets = {SEND: OperatingState(used_s=1.0, reset_at=T0 + 30, request_cost_s=1.0)}

    decision = pacing.decide(BucketState(), budgets, T0, BUDGET, interactive=False, method=None)

    assert decision.wait == 0
    assert decision.budgets == budgets


def test_in_flight_marks_are_bounded():
    state = OperatingState(in_flight=tuple(T0 + i / 100 for i in range(pacing.MAX_IN_FLIGHT)))

    decision = pacing.decide(
        BucketState(), {SEND: state}, T0 + 1, BUDGET, interactive=False, method=SEND
    )

    assert len(decision.budgets[SEND].in_flight) == pacing.MAX_IN_FLIGHT
    assert decision.budgets[SEND].in_flight[-1] == T0 + 1


def test_a_reply_ends_the_oldest_request_in_flight_and_may_bring_its_cost():
    state = OperatingState(used_s=10.0, reset_at=T0 + 30, in_flight=(T0, T0 + 1))

    later = pacing.observe(
        state, operating=11.0, operating_reset_at=int(T0) + 30, now=T0 + 2, request_cost_s=1.0
    )

    assert later == OperatingState(
        used_s=11.0, reset_at=T0 + 30, request_cost_s=1.0, in_flight=(T0 + 1,)
    )


def test_a_reply_without_operating_still_ends_a_request_and_keeps_the_cost():
    state = OperatingState(used_s=10.0, reset_at=T0 + 30, request_cost_s=1.0, in_flight=(T0,))

    later = pacing.observe(state, operating=None, operating_reset_at=None, now=T0 + 1)

    assert later == replace(state, in_flight=())


def test_operating_rows_read_the_old_two_element_form():
    assert OperatingState.from_row([5, T0]) == OperatingState(used_s=5.0, reset_at=T0)
    state = OperatingState(used_s=5.0, reset_at=T0, request_cost_s=1.0, in_flight=(T0, T0 + 1))
    assert OperatingState.from_row(state.as_row()) == state


def test_batch_cost_is_the_spread_of_its_running_totals_scaled_to_all_calls():
    reports = [(39.0 + 0.02 * (i + 1), int(T0) + 30) for i in range(50)]

    assert pacing.batch_cost_s(reports) == pytest.approx(1.0)


def test_batch_cost_ignores_the_calls_from_before_a_bucket_dropped_out():
    before = [(45.0 + 0.02 * (i + 1), int(T0)) for i in range(10)]
    after = [(39.0 + 0.02 * (i + 1), int(T0) + 6) for i in range(40)]

    assert pacing.batch_cost_s(before + after) == pytest.approx(1.0)


def test_batch_cost_is_unknown_from_a_single_call():
    assert pacing.batch_cost_s([(12.0, int(T0))]) is None
    assert pacing.batch_cost_s([]) is None


@dataclass
class _Server:
    """The sandbox's execution budget (b24app.sandbox.limits): ten buckets per window, each
    opened by the first call after the last one closed; refuses once the sum exceeds it."""

    budget: float
    window: float
    buckets: list[list[float]] = field(default_factory=list)

    def call(self, now: float, cost: float) -> tuple[float, int] | None:
        self.buckets = [b for b in self.buckets if b[0] + self.window > now]
        if sum(b[1] for b in self.buckets) > self.budget + 1e-9:
            return None
        if self.buckets and self.buckets[-1][0] + self.window / 10 > now:
            self.buckets[-1][1] += cost
        else:
            self.buckets.append([now, cost])
        return sum(b[1] for b in self.buckets), int(self.buckets[0][0] + self.window)


def test_lanes_send_near_the_budget_without_being_refused():
    """Six lanes, 200 batches of 50 calls at 20 ms, 48 s per 60 s: the benchmark's case."""
    server, store = _Server(budget=48.0, window=60.0), pacing.MemoryPacerStore(lambda _k: BUDGET)
    events: list[tuple[float, int, str]] = [(T0, lane, "ask") for lane in range(6)]
    left, refused, now = 10_000, 0, T0
    while left > 0:
        now, lane, kind = heapq.heappop(events)
        if kind == "ask":
            wait = store.acquire("p", now, interactive=False, method=SEND)
            if wait > 0:
                heapq.heappush(events, (now + wait, lane, "ask"))
                continue
            # Sent after a broker poll; the reply takes a moment more.
            reports = []
            for _ in range(min(50, left)):
                report = server.call(now + 0.5, 0.02)
                if report is None:
                    refused += 1
                else:
                    reports.append(report)
            left -= len(reports)
            latest = max(reports, key=lambda r: (r[1], r[0]), default=(None, None))
            store.record_operating(
                "p", SEND, *latest, now + 0.7, request_cost_s=pacing.batch_cost_s(reports)
            )
            heapq.heappush(events, (now + 0.7, lane, "ask"))

    assert refused == 0
    assert now - T0 < 250  # 5 windows of 44 batches cover 200; the 4th reset is at 240 s


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


def exercise_in_flight(store: pacing.PacerStore, key: str) -> None:
    """Grants count against the budget until their replies come back."""
    store.record_operating(key, SEND, 40.0, int(T0) + 30, T0, request_cost_s=1.0)
    waits = [store.acquire(key, T0, interactive=False, method=SEND) for _ in range(6)]
    assert waits == [0.0] * 5 + [pacing.PROBE_WAIT_S]  # 40 + 5 in flight = 45 of 45.12

    # One reply: the window moved on and the total fell, one request fewer in flight.
    store.record_operating(key, SEND, 38.0, int(T0) + 36, T0 + 1)
    waits = [store.acquire(key, T0 + 1, interactive=False, method=SEND) for _ in range(6)]
    assert waits.count(0.0) == 3  # 38 + 4 + 3 = 45


def test_memory_store_paces_bucket_and_budget():
    exercise_store_semantics(pacing.MemoryPacerStore(lambda _key: LIMITS), "portal-a")


def test_memory_store_counts_requests_in_flight():
    exercise_in_flight(pacing.MemoryPacerStore(lambda _key: BUDGET), "portal-a")


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
def test_redis_store_counts_requests_in_flight(redis_store_factory):
    store = redis_store_factory()
    exercise_in_flight(
        pacing.RedisPacerStore(store._redis, lambda _key: BUDGET, prefix=store._prefix),
        "portal-a",
    )


@pytest.mark.redis
def test_redis_store_reads_the_old_used_comma_reset_form(redis_store_factory):
    store = redis_store_factory()
    _, operating_key = store._keys("portal-a")
    store._redis.hset(operating_key, SEND, f"{400.0!r},{T0 + 90!r}")

    assert store.acquire("portal-a", T0, interactive=False, method=SEND) == pytest.approx(90)
    store.record_operating("portal-a", SEND, 10.0, int(T0) + 120, T0 + 91, request_cost_s=0.5)
    assert store.acquire("portal-a", T0 + 91, interactive=False, method=SEND) == 0.0

    state = OperatingState.from_row(json.loads(store._redis.hget(operating_key, SEND)))
    assert state == OperatingState(10.0, T0 + 120, 0.5, (T0 + 91,))


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
