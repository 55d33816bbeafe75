"""`make chaos`: nothing is lost or sent twice when workers die, tokens race or the portal fails.

Keys written to bench/results.json:

- `chaos`: a 1 000-recipient campaign on a portal with the weekly limit on; its worker is killed
  with SIGKILL at 10 random moments (each after a random, distinct batch, plus a random delay,
  with 300 ms of latency on every request so kills land on requests in flight) and restarted
  each time; the portal is paced at 0.5 requests/s (burst 2) so the campaign outlasts the kills,
  and every other kill first waits for a batch on the wire.
  `lost` counts recipients not in a final state at the end, `duplicates` the extra messages in
  the sandbox's store: both must be 0. `nfr` is the same on an NFR portal, where an
  interrupted send is never resent: it reports how many ended `unknown`, and 0 duplicates.
- `refresh_race`: 50 callers (25 threads here, 25 processes) call the portal at the same instant
  with an expired token; counted on the sandbox's side: how many refresh tokens were spent
  (`refreshes`, must be 1). `invalid_grant` (must be 0) counts callers refused a refresh and the
  portal marked auth_failed: the sandbox keeps no record of grants it refused.
- `sandbox_faults`: campaigns under latency, a 5xx rate, and connections dropped before and after
  the message is stored; every recipient must end in a state its inbox agrees with.
- `hostile_input`: see bench/hostile.py.

Usage: python -m bench.chaos [--only KEY ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from bench.common import ROOT
from bench.procs import BenchEnv, SandboxProcess, WorkerProcess, load_average, reset_app_data

KEYS = ("chaos", "refresh_race", "sandbox_faults", "hostile_input")
PORT = 8140  # hub; portals on 8141.. (never the bench's 8120 or the tests' 815x-817x)
# A killed worker's in-flight sends are settled by its restart; others after 2 x timeout + 5 s.
REQUEST_TIMEOUT_S = "5"


class Worker(Protocol):
    """What the scenarios need of a worker: bench.procs.WorkerProcess or the test plugin's."""

    @property
    def running(self) -> bool: ...

    def kill(self) -> None: ...

    def restart(self) -> Any: ...


# --- SIGKILL during a campaign ----------------------------------------------------------------


def kill_during_campaign(
    control: Any,
    worker: Worker,
    portal: Any,
    user_ids: list[int],
    *,
    kills: int,
    rng: random.Random,
    rate: float = 0.5,
    burst: int = 2,
    latency_ms: float = 300.0,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """Run a campaign to `user_ids`, SIGKILL its worker `kills` times mid-run, audit the end.

    The portal is slowed to `rate` requests/s with a small `burst` (on both sides), so that a
    restarted worker cannot send the rest of the campaign at once: every kill lands mid-run.
    """
    from b24app.campaigns import services
    from b24app.campaigns.models import Recipient
    from b24app.messaging.models import Delivery
    from bench import scenario

    line = scenario.joined_line(portal)
    campaign = scenario.wait_resolved(scenario.campaign_for(portal, line, user_ids))
    batches = (len(user_ids) + 49) // 50
    if batches < kills + 2:
        raise ValueError(f"{kills} kills need at least {50 * (kills + 2)} recipients")
    # Kill after distinct, randomly chosen batches (never the last two, so that there is still
    # work in flight), each kill interrupting a different stretch of the campaign.
    after = sorted(rng.sample(range(1, batches - 1), kills))
    index = _index(control, portal)
    control.control(portal=index, latency_ms=latency_ms, rate=rate, burst=burst, reset_limits=True)
    type(portal).objects.filter(pk=portal.pk).update(rate=rate, burst=burst)
    services.campaign_start(campaign=campaign)
    done_states = list(scenario.FINAL_STATES)
    in_flight: list[int] = []
    started = time.monotonic()

    def sending() -> int:
        return Delivery.objects.filter(
            campaign_recipient__campaign=campaign, status=Delivery.Status.SENDING
        ).count()

    def settled() -> int:
        return Recipient.objects.filter(campaign=campaign, delivery__status__in=done_states).count()

    for batch in after:

        def reached(batch: int = batch) -> bool:
            return settled() >= batch * 50 - 25 or _finished(campaign)

        try:
            scenario.wait_until(
                reached,
                timeout=timeout,
                poll=0.05,
                what="progress before a kill",
            )
        except TimeoutError:
            break
        if _finished(campaign):
            break
        if len(in_flight) % 2 == 0:
            # Every other kill waits for a batch on the wire (the paced campaign is idle most
            # of the time), then lands within the request's latency.
            with contextlib.suppress(TimeoutError):
                scenario.wait_until(
                    lambda: sending() > 0 or _finished(campaign),
                    timeout=10.0,
                    poll=0.01,
                    what="a batch in flight",
                )
        time.sleep(rng.uniform(0.0, latency_ms / 1000))
        in_flight.append(sending())
        worker.kill()
        worker.restart()
    completed = True
    try:
        scenario.wait_finished([campaign], timeout=timeout)
    except TimeoutError:
        completed = False
    control.control(portal=index, latency_ms=0)
    result = scenario.audit(control, campaign)
    return {
        "recipients": len(user_ids),
        "runs": len(in_flight),
        "kills": len(in_flight),
        "portal_rate": rate,
        "portal_burst": burst,
        "in_flight_at_kills": in_flight,
        "completed": completed,
        "lost": result.lost,
        "duplicates": result.duplicates,
        "missing": result.missing,
        "unexpected": result.unexpected,
        "unknown": result.states.get(Delivery.Status.UNKNOWN, 0),
        "states": result.states,
        "wall_s": round(time.monotonic() - started, 1),
    }


def _finished(campaign: Any) -> bool:
    from b24app.campaigns.models import Campaign

    return Campaign.objects.filter(
        pk=campaign.pk, status__in=[Campaign.Status.COMPLETED, Campaign.Status.BLOCKED]
    ).exists()


def _index(control: Any, portal: Any) -> int:
    for index, info in control.state()["portals"].items():
        if info["member_id"] == portal.member_id:
            return int(index)
    raise LookupError(portal.member_id)


def chaos(env: BenchEnv, *, kills: int = 10, recipients: int = 1_000) -> dict[str, Any]:
    from bench import scenario

    reset_app_data()
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "0")) or None)
    users = scenario.users_for(recipients)
    sandbox = SandboxProcess(env, port=PORT, portals=2, users=users, name="chaos-sandbox")
    worker = WorkerProcess(
        env, concurrency=2, name="b24chaos", extra_env={"B24_REQUEST_TIMEOUT": REQUEST_TIMEOUT_S}
    )
    load_before = load_average()
    with sandbox, worker:
        limited = scenario.connect_portal(sandbox.control, 1)
        sandbox.control.control(portal=2, nfr=True)
        nfr = scenario.connect_portal(sandbox.control, 2, nfr=True)
        ids = scenario.active_user_ids(1, users, recipients)
        on_limit = kill_during_campaign(sandbox.control, worker, limited, ids, kills=kills, rng=rng)
        ids = scenario.active_user_ids(2, users, recipients)
        on_nfr = kill_during_campaign(sandbox.control, worker, nfr, ids, kills=kills, rng=rng)
    return {
        **on_limit,
        "weekly_limit": True,
        "nfr": on_nfr,
        "load_before": load_before,
        "load_after": load_average(),
        "target": "lost == 0 and duplicates == 0 (also on NFR, where unknowns stay)",
    }


# --- the token refresh race -------------------------------------------------------------------


@dataclass
class RaceOutcome:
    outcomes: dict[str, int]
    refreshes: int
    invalid_grant: int
    portal_status: str


def refresh_race(
    *,
    control: Any,
    portal: Any,
    threads: int,
    processes: int,
    database_url: str,
    count_refreshes: Callable[[], int],
    stale: bool,
    env: dict[str, str] | None = None,
) -> RaceOutcome:
    """Let `threads` + `processes` callers hit an expired token at the same instant.

    `stale=False`: the database knows the token has expired (the usual case: callers refresh
    before calling). `stale=True`: the database thinks it is fresh but Bitrix has expired it
    (callers are refused, then refresh with `stale_token`).
    """
    from django.db import close_old_connections
    from django.utils import timezone

    from b24app.portals.models import Portal
    from bench import caller

    control.control(expire_tokens=True)
    if not stale:
        Portal.objects.filter(pk=portal.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    before = count_refreshes()
    child_env = {
        **os.environ,
        **(env or {}),
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "b24app.settings",
        "B24_SANDBOX": "True",
        "PYTHONUNBUFFERED": "1",
    }
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.caller", str(portal.pk)],
            cwd=ROOT,
            env=child_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for child in children:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(
                f"a caller did not start: {line} {child.stderr.read() if child.stderr else ''}"
            )
    gate = threading.Barrier(threads + 1)
    outcomes: list[str] = []
    lock = threading.Lock()

    def thread_caller() -> None:
        close_old_connections()
        gate.wait()
        result = caller.call_once(portal.pk)
        with lock:
            outcomes.append(result)

    pool = [threading.Thread(target=thread_caller) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for child in children:  # the start signal, as close together as the pipes allow
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    gate.wait()
    for thread in pool:
        thread.join()
    for child in children:
        out, err = child.communicate(timeout=120)
        lines = [x for x in out.splitlines() if x.startswith("{")]
        outcomes.append(json.loads(lines[-1])["outcome"] if lines else f"crashed:{err[-200:]}")
    tally: dict[str, int] = {}
    for outcome in outcomes:
        tally[outcome] = tally.get(outcome, 0) + 1
    status = Portal.objects.get(pk=portal.pk).status
    refused = sum(n for o, n in tally.items() if "invalid_grant" in o or "AUTH_FAILED" in o)
    return RaceOutcome(
        outcomes=tally,
        refreshes=count_refreshes() - before,
        invalid_grant=refused + (0 if status == Portal.Status.ACTIVE else 1),
        portal_status=status,
    )


def used_refresh_tokens(state_file: Path, member_index: int) -> int:
    """Refresh tokens the sandbox has seen spent, from its saved state (written every second)."""
    if not state_file.exists():
        return 0
    data = json.loads(state_file.read_text(encoding="utf-8"))
    return sum(1 for t in data.get("refresh", []) if t["portal"] == member_index and t["used"])


def refresh_race_case(env: BenchEnv, *, threads: int = 25, processes: int = 25) -> dict[str, Any]:
    from django.db import connection

    from bench import scenario

    reset_app_data()
    sandbox = SandboxProcess(env, port=PORT, portals=1, users=50, name="race-sandbox")
    scenarios: dict[str, Any] = {}
    with sandbox:
        # The race is about tokens: let 50 simultaneous calls through the request bucket.
        sandbox.control.control(rate=1000, burst=1000)

        def count() -> int:
            time.sleep(1.5)  # the sandbox saves its state once a second
            return used_refresh_tokens(sandbox.state_file, 1)

        portal = scenario.connect_portal(sandbox.control, 1)
        for name, stale in (("expired_in_database", False), ("refused_by_bitrix", True)):
            outcome = refresh_race(
                control=sandbox.control,
                portal=portal,
                threads=threads,
                processes=processes,
                database_url=env.database_url,
                count_refreshes=count,
                stale=stale,
                env=env.subprocess_env(),
            )
            scenarios[name] = vars(outcome)
    return {
        "callers": threads + processes,
        "threads": threads,
        "processes": processes,
        "database": connection.vendor,
        "refreshes": max(s["refreshes"] for s in scenarios.values()),
        "invalid_grant": sum(s["invalid_grant"] for s in scenarios.values()),
        "scenarios": scenarios,
        "counted": "refreshes: spent refresh tokens in the sandbox's state file; invalid_grant: "
        "callers refused a refresh, plus 1 if the portal was marked auth_failed",
        "target": "refreshes == 1 and invalid_grant == 0 in each scenario",
    }


# --- sandbox faults ---------------------------------------------------------------------------

FAULTS = {"latency_ms": 80.0, "error_rate": 0.1, "drop_before_rate": 0.1, "drop_after_rate": 0.1}


def campaign_under_faults(
    control: Any,
    portal: Any,
    user_ids: list[int],
    *,
    faults: dict[str, float],
    timeout: float = 300.0,
) -> dict[str, Any]:
    """A campaign with `faults` switched on for its portal once its recipients are known.

    Right states: `sent` has exactly one message in the inbox; `unknown` at most one (only where
    a resend's reply was lost too, or on NFR portals); nothing else has any; nobody is left
    queued or sending.
    """
    from b24app.campaigns import services
    from b24app.campaigns.models import Recipient
    from b24app.messaging.models import Delivery
    from bench import scenario

    line = scenario.joined_line(portal)
    campaign = scenario.wait_resolved(scenario.campaign_for(portal, line, user_ids))
    index = _index(control, portal)
    control.control(portal=index, **faults)
    services.campaign_start(campaign=campaign)
    completed = True
    try:
        scenario.wait_finished([campaign], timeout=timeout)
    except TimeoutError:
        completed = False
    control.control(portal=index, **dict.fromkeys(faults, 0))
    got = scenario.inbox(control, portal.member_id)
    wrong = 0
    rows = Recipient.objects.filter(campaign=campaign).values_list(
        "user_id", "skip_reason", "delivery__status"
    )
    for user_id, skip, status in rows:
        n = got.get(user_id, 0)
        if skip:
            ok = n == 0
        elif status == Delivery.Status.SENT:
            ok = n == 1
        elif status == Delivery.Status.UNKNOWN:
            ok = n <= 1
        else:
            ok = status in (Delivery.Status.REJECTED, Delivery.Status.LIMITED) and n == 0
        wrong += not ok
    result = scenario.audit(control, campaign)
    return {
        "recipients": len(user_ids),
        "faults": faults,
        "completed": completed,
        "states": result.states,
        "wrong_state": wrong,
        "lost": result.lost,
        "duplicates": result.duplicates,
        "retried_attempts": result.retries,
    }


def sandbox_faults(env: BenchEnv, *, recipients: int = 2_000) -> dict[str, Any]:
    from bench import scenario

    reset_app_data()
    users = scenario.users_for(recipients)
    sandbox = SandboxProcess(env, port=PORT, portals=2, users=users, name="faults-sandbox")
    worker = WorkerProcess(
        env, concurrency=2, name="b24faults", extra_env={"B24_REQUEST_TIMEOUT": REQUEST_TIMEOUT_S}
    )
    load_before = load_average()
    with sandbox, worker:
        sandbox.control.control(rate=10.0, burst=100)
        limited = scenario.connect_portal(sandbox.control, 1, rate=10.0, burst=100)
        sandbox.control.control(portal=2, nfr=True)
        nfr = scenario.connect_portal(sandbox.control, 2, nfr=True, rate=10.0, burst=100)
        on_limit = campaign_under_faults(
            sandbox.control, limited, scenario.active_user_ids(1, users, recipients), faults=FAULTS
        )
        on_nfr = campaign_under_faults(
            sandbox.control, nfr, scenario.active_user_ids(2, users, recipients), faults=FAULTS
        )
    return {
        "weekly_limit": on_limit,
        "nfr": on_nfr,
        "wrong_state": on_limit["wrong_state"] + on_nfr["wrong_state"],
        "duplicates": on_limit["duplicates"] + on_nfr["duplicates"],
        "lost": on_limit["lost"] + on_nfr["lost"],
        "load_before": load_before,
        "load_after": load_average(),
        "target": "wrong_state == 0, lost == 0, duplicates == 0",
    }


# --- make chaos -------------------------------------------------------------------------------


def run(env: BenchEnv, only: set[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not only or "chaos" in only:
        out["chaos"] = chaos(env)
        print(f"   chaos: {json.dumps(out['chaos'])}", flush=True)
    if not only or "refresh_race" in only:
        out["refresh_race"] = refresh_race_case(env)
        print(f"   refresh_race: {json.dumps(out['refresh_race'])}", flush=True)
    if not only or "sandbox_faults" in only:
        out["sandbox_faults"] = sandbox_faults(env)
        print(f"   sandbox_faults: {json.dumps(out['sandbox_faults'])}", flush=True)
    if not only or "hostile_input" in only:
        from bench import hostile

        out["hostile_input"] = hostile.run_all(env)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", default=None, help="result keys")
    args = parser.parse_args()
    from bench.run import run_all

    return run_all({"chaos": KEYS}, args.only)


if __name__ == "__main__":
    sys.exit(main())
