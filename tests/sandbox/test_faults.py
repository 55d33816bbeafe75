"""Fault injection through the control API: drops, 5xx, latency (global and per portal)."""

from __future__ import annotations

import time

import pytest
import requests

pytestmark = pytest.mark.sandbox

SEND = "imopenlines.network.message.add"


def _send(sandbox, token, user_id=3, portal=1):
    return sandbox.http.post(
        sandbox.rest_url(SEND, portal),
        data={"auth": token, "CODE": sandbox.LINE_CODE, "USER_ID": user_id, "MESSAGE": "hi"},
        timeout=5,
    )


def test_drop_before_store_closes_the_connection_and_stores_nothing(sandbox):
    token = sandbox.token()
    sandbox.join(token=token)
    sandbox.control(portal=1, drop_before_next=1)
    with pytest.raises(requests.ConnectionError):
        _send(sandbox, token)
    assert sandbox.deliveries() == []
    assert _send(sandbox, token).status_code == 200  # the counter fired once only
    assert len(sandbox.deliveries()) == 1


def test_drop_after_store_closes_the_connection_but_the_message_is_stored(sandbox):
    token = sandbox.token()
    sandbox.join(token=token)
    sandbox.control(portal=1, drop_after_next=1)
    with pytest.raises(requests.ConnectionError):
        _send(sandbox, token)
    assert [d["USER_ID"] for d in sandbox.deliveries()] == [3]
    retry = _send(sandbox, token)  # a blind retry meets the weekly ledger
    assert retry.json()["error"] == "USER_MESSAGE_LIMIT"


def test_drops_hit_batches_that_send_messages(sandbox):
    token = sandbox.token()
    sandbox.join(token=token)
    sandbox.control(portal=1, drop_after_next=1)
    cmd = {"a": f"{SEND}?CODE={sandbox.LINE_CODE}&USER_ID=4&MESSAGE=x"}
    with pytest.raises(requests.ConnectionError):
        sandbox.call("batch", token=token, json={"cmd": cmd})
    assert len(sandbox.deliveries()) == 1


def test_drops_do_not_hit_other_methods(sandbox):
    token = sandbox.token()
    sandbox.control(portal=1, drop_before_rate=1.0, drop_after_rate=1.0)
    assert sandbox.call("profile", token=token).status_code == 200


def test_drop_rate_one_drops_every_send(sandbox):
    token = sandbox.token()
    sandbox.join(token=token)
    sandbox.control(drop_before_rate=1.0)
    for user_id in (3, 4):
        with pytest.raises(requests.ConnectionError):
            _send(sandbox, token, user_id)
    assert sandbox.deliveries() == []


def test_error_counter_answers_500_for_the_next_calls(sandbox):
    token = sandbox.token()
    sandbox.control(portal=1, error_next=2)
    statuses = [sandbox.call("profile", token=token).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    sandbox.control(portal=1, error_next=1)
    assert sandbox.call("profile", token=token).json() == {
        "error": "INTERNAL_SERVER_ERROR",
        "error_description": "Internal server error",
    }


def test_error_rate_is_per_portal(sandbox):
    one, two = sandbox.token(1), sandbox.token(2)
    sandbox.control(portal=1, error_rate=1.0)
    assert sandbox.call("profile", 1, token=one).status_code == 500
    assert sandbox.call("profile", 2, token=two).status_code == 200


def test_latency_is_added_to_rest_calls(sandbox):
    token = sandbox.token()
    sandbox.control(portal=1, latency_ms=300)
    started = time.monotonic()
    assert sandbox.call("profile", token=token).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_reset_clears_faults_and_settings(sandbox):
    sandbox.control(error_rate=1.0, latency_ms=5, nfr=True)
    sandbox.reset()
    state = sandbox.control()["state"]["global"]
    assert state["error_rate"] == 0.0 and state["latency_ms"] == 0.0 and state["nfr"] is False
