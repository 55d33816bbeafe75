"""Leaky bucket and per-method execution budget (spec §4), counted rather than timed."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.sandbox


def _statuses(sandbox, token, count, method="profile", portal=1):
    return [sandbox.call(method, portal, token=token).status_code for _ in range(count)]


def test_bucket_allows_the_burst_then_refuses_with_503(sandbox):
    token = sandbox.token()
    sandbox.control(portal=1, rate=0.001, burst=5, reset_limits=True)
    statuses = _statuses(sandbox, token, 8)
    assert statuses == [200] * 5 + [503] * 3
    response = sandbox.call("profile", token=token)
    assert response.json() == {
        "error": "QUERY_LIMIT_EXCEEDED",
        "error_description": "Too many requests",
    }


def test_bucket_drains_at_the_sustained_rate(sandbox):
    token = sandbox.token()
    sandbox.control(portal=1, rate=2, burst=10, reset_limits=True)
    assert _statuses(sandbox, token, 10).count(200) == 10
    sandbox.advance(5)  # 5 s at 2 requests/s empties the bucket again
    assert _statuses(sandbox, token, 12).count(200) == 10


def test_bucket_refills_by_rate_times_elapsed_seconds(sandbox):
    token = sandbox.token()
    sandbox.control(portal=1, rate=2, burst=50, reset_limits=True)
    assert _statuses(sandbox, token, 55).count(200) == 50
    sandbox.advance(3)  # 6 slots
    statuses = _statuses(sandbox, token, 9)
    assert statuses.count(200) == 6
    assert statuses[-1] == 503


def test_buckets_are_per_portal(sandbox):
    sandbox.control(rate=0.001, burst=2, reset_limits=True)
    one, two = sandbox.token(1), sandbox.token(2)
    sandbox.control(reset_limits=True)
    assert _statuses(sandbox, one, 3) == [200, 200, 503]
    assert _statuses(sandbox, two, 2, portal=2) == [200, 200]


def test_a_batch_counts_once_for_the_bucket(sandbox):
    token = sandbox.token()
    sandbox.control(portal=1, rate=0.001, burst=2, reset_limits=True)
    cmd = {f"k{i}": "profile" for i in range(20)}
    response = sandbox.call("batch", token=token, json={"halt": 0, "cmd": cmd})
    assert response.status_code == 200
    assert len(response.json()["result"]["result"]) == 20
    assert sandbox.call("profile", token=token).status_code == 200
    assert sandbox.call("profile", token=token).status_code == 503


def test_execution_budget_lets_the_crossing_call_finish_then_refuses_429(sandbox):
    token = sandbox.token()
    sandbox.control(portal=1, op_cost_ms=100, op_budget_s=0.25, reset_limits=True)
    operating = []
    for _ in range(3):
        response = sandbox.call("profile", token=token)
        assert response.status_code == 200
        operating.append(response.json()["time"]["operating"])
    assert operating == pytest.approx([0.1, 0.2, 0.3])  # the third crosses 0.25 and completes
    refused = sandbox.call("profile", token=token)
    assert refused.status_code == 429
    assert refused.json() == {
        "error": "OPERATION_TIME_LIMIT",
        "error_description": "Method is blocked due to operation time limit",
    }
    assert sandbox.call("user.current", token=token).status_code == 200  # other methods go on


def test_execution_budget_frees_up_at_operating_reset_at(sandbox):
    token = sandbox.token()
    sandbox.control(portal=1, op_cost_ms=100, op_budget_s=0.15, op_window_s=600, reset_limits=True)
    first = sandbox.call("profile", token=token).json()["time"]
    sandbox.call("profile", token=token)
    assert sandbox.call("profile", token=token).status_code == 429
    assert first["operating_reset_at"] == int(first["start"] + 600)
    sandbox.advance(599)
    assert sandbox.call("profile", token=token).status_code == 429
    sandbox.advance(2)
    response = sandbox.call("profile", token=sandbox.token())
    assert response.status_code == 200
    assert response.json()["time"]["operating"] == pytest.approx(0.1)


def test_message_sends_are_charged_the_configured_cost(sandbox):
    token = sandbox.token()
    sandbox.control(portal=1, op_cost_ms=7)
    sandbox.join(token=token)
    sent = sandbox.call(
        "imopenlines.network.message.add",
        token=token,
        CODE=sandbox.LINE_CODE,
        USER_ID=3,
        MESSAGE="hi",
    )
    assert sent.json()["time"]["operating"] == pytest.approx(0.007)


def test_a_shorter_budget_window_frees_its_tenths_one_by_one(sandbox):
    # Spec §4.2: ten buckets per window. With a 60 s window a bucket takes calls for 6 s, so
    # usage from the window's first seconds drops out before later usage does.
    token = sandbox.token()
    sandbox.control(portal=1, op_cost_ms=100, op_budget_s=0.15, op_window_s=60, reset_limits=True)
    first = sandbox.call("profile", token=token).json()["time"]
    sandbox.advance(10)
    second = sandbox.call("profile", token=token).json()["time"]
    assert second["operating"] == pytest.approx(0.2)
    assert second["operating_reset_at"] == int(first["start"] + 60)  # the oldest bucket's end
    assert sandbox.call("profile", token=token).status_code == 429
    sandbox.advance(51)  # the first bucket is gone, the second still counts
    response = sandbox.call("profile", token=sandbox.token())
    assert response.status_code == 200
    assert response.json()["time"]["operating"] == pytest.approx(0.2)


def test_the_default_window_keeps_one_minute_buckets_for_ten_minutes(sandbox):
    token = sandbox.token()
    sandbox.control(portal=1, op_cost_ms=100, op_budget_s=10, op_window_s=600, reset_limits=True)
    first = sandbox.call("profile", token=token).json()["time"]
    sandbox.advance(59)
    sandbox.call("profile", token=token)
    sandbox.advance(2)  # a new minute: a second bucket
    sandbox.call("profile", token=token)
    sandbox.advance(600 - 61 + 1)  # the first bucket (both of its calls) expired
    response = sandbox.call("profile", token=sandbox.token()).json()["time"]
    assert response["operating"] == pytest.approx(0.2)
    assert first["operating_reset_at"] == int(first["start"] + 600)
