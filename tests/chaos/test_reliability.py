"""Nothing lost, nothing sent twice: SIGKILLed workers, a token refresh race, a failing portal.

The same scenarios as `make chaos` (bench/chaos.py), with fewer recipients, kills and callers.
"""

from __future__ import annotations

import random

import pytest

from b24app.sandbox.control import ControlClient
from b24app.sandbox.server import SandboxServer
from bench import chaos, scenario
from tests.chaos.conftest import USERS
from tests.plugins.worker import WorkerControl, _database_url

pytestmark = [
    pytest.mark.worker,
    pytest.mark.sandbox,
    pytest.mark.django_db(transaction=True),
]


def test_a_worker_killed_again_and_again_loses_and_duplicates_nothing(
    control: ControlClient, worker: WorkerControl
):
    worker.start()
    rng = random.Random()
    limited = scenario.connect_portal(control, 1)
    control.control(portal=2, nfr=True)
    nfr = scenario.connect_portal(control, 2, nfr=True)

    on_limit = chaos.kill_during_campaign(
        control,
        worker,
        limited,
        scenario.active_user_ids(1, USERS, 300),
        kills=3,
        rng=rng,
        rate=1.0,
    )
    on_nfr = chaos.kill_during_campaign(
        control, worker, nfr, scenario.active_user_ids(2, USERS, 300), kills=2, rng=rng, rate=1.0
    )

    print(f"weekly limit: {on_limit}\nNFR: {on_nfr}")
    assert on_limit["kills"] == 3 and on_limit["completed"]
    assert on_limit["lost"] == on_limit["duplicates"] == on_limit["missing"] == 0
    assert on_nfr["kills"] == 2 and on_nfr["completed"]
    assert on_nfr["lost"] == on_nfr["duplicates"] == on_nfr["missing"] == 0


def test_concurrent_callers_on_an_expired_token_refresh_it_once(
    control: ControlClient, chaos_sandbox: SandboxServer
):
    state = chaos_sandbox.sandbox
    control.control(rate=1000, burst=1000)
    portal = scenario.connect_portal(control, 1)

    def spent() -> int:
        with state.lock:
            return sum(1 for t in state.refresh.values() if t.portal == 1 and t.used)

    outcomes = {}
    for stale in (False, True):
        outcomes[stale] = chaos.refresh_race(
            control=control,
            portal=portal,
            threads=12,
            processes=3,
            database_url=_database_url(),
            count_refreshes=spent,
            stale=stale,
        )

    for outcome in outcomes.values():
        assert outcome.refreshes == 1, outcome
        assert outcome.invalid_grant == 0, outcome
        assert outcome.outcomes == {"ok": 15}, outcome


def test_latency_errors_and_dropped_connections_end_every_recipient_in_its_right_state(
    control: ControlClient, worker: WorkerControl
):
    worker.start()
    control.control(rate=20.0, burst=200)
    limited = scenario.connect_portal(control, 1, rate=20.0, burst=200)
    control.control(portal=2, nfr=True)
    nfr = scenario.connect_portal(control, 2, nfr=True, rate=20.0, burst=200)
    faults = {"latency_ms": 30.0, "error_rate": 0.15, "drop_before_rate": 0.15,
              "drop_after_rate": 0.15}  # fmt: skip

    on_limit = chaos.campaign_under_faults(
        control, limited, scenario.active_user_ids(1, USERS, 400), faults=faults
    )
    on_nfr = chaos.campaign_under_faults(
        control, nfr, scenario.active_user_ids(2, USERS, 400), faults=faults
    )

    print(f"weekly limit: {on_limit}\nNFR: {on_nfr}")
    for result in (on_limit, on_nfr):
        assert result["completed"]
        assert result["wrong_state"] == result["lost"] == result["duplicates"] == 0
    assert on_limit["retried_attempts"] > 0  # the faults did fire
