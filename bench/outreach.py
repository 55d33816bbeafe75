"""`outreach`, `outreach_budget_bound`, `naive`, `multi_portal`: campaign throughput against the
platform ceiling, on real processes over loopback.

Each case starts a sandbox subprocess (`manage.py sandbox` with the case's limits), a Celery
worker subprocess on this run's database and broker, connects the sandbox portals, creates the
campaigns through the campaigns services and lets the worker resolve their recipients. Then both
sides start from an empty request bucket and a full execution budget (`scenario.quiesce`), the
campaigns are started, and completion is read from the database. The sandbox's store must hold
exactly one message per recipient the app calls `sent`.

The ceiling is a completion time (issue 7): for N messages in batches of 50, bucket rate r and
burst b, server cost c per message, budget B per window W,
`T_min = max((ceil(N/50) - b)/r, (N*c - B)/(B/W), 0)` (`bitrix.pacing.t_min`), and
`efficiency = T_min / T_actual`. Two further references explain a shortfall:

- `T_min_bulk`: the same formula with the burst and the budget that campaigns may use. The app's
  pacer keeps a share of both for people (`pacing.Limits.interactive_reserve`, recorded with the
  result), so bulk sees b' = (1 - reserve) b and B' = (1 - reserve) B.
- `T_floor_sandbox`: the least time the sandbox's own rules allow, found by simulating them. Its
  execution budget lives in one-minute buckets that expire W after they open, so with W = 60 s
  the budget refills all at once, once a minute, rather than at B/W per second.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import requests

from bench import scenario
from bench.procs import (
    BenchEnv,
    SandboxProcess,
    WorkerProcess,
    aware_seconds,
    load_average,
    reset_app_data,
)

KEYS = ("outreach", "outreach_budget_bound", "naive", "multi_portal")
PORT = 8120  # hub; portal i on PORT + i (the app's sandbox host patterns allow 81xx)
BATCH = 50
CONCURRENCY = 2


def t_min(
    n: int, *, rate: float, burst: float, cost_s: float, budget_s: float, window_s: float
) -> float:
    """`T_min` by the issue's formula; equal to `bitrix.pacing.t_min` (checked in `run`), but
    taking a fractional burst, which the bulk share of a burst needs."""
    by_rate = (math.ceil(n / BATCH) - burst) / rate
    by_budget = (n * cost_s - budget_s) / (budget_s / window_s)
    return max(by_rate, by_budget, 0.0)


def sandbox_floor(
    n: int, *, rate: float, burst: float, cost_s: float, budget_s: float, window_s: float
) -> float:
    """The earliest the last of `n` messages can be stored under the sandbox's own rules.

    Simulates `sandbox.limits`: a leaky bucket (a request is refused when it would lift the level
    above `burst`), and per-method execution time in ten buckets per window (each takes calls
    for `window_s / 10` and expires `window_s` after it opened); each sub-call of a batch is
    refused once the live sum already exceeds the budget, so the call that crosses it still runs.
    Requests go out as early as both allow.

    However fine the buckets, usage stays in the sum for a whole window after it was spent (the
    sliding window of spec §4.2), so no sender can spend more than the budget in any `window_s`:
    the formula's T_min, which lets the budget come back at B/W from the first second, is below
    what these rules allow whenever the budget binds.
    """
    t = 0.0
    level = 0.0
    level_at = 0.0
    buckets: list[list[float]] = []  # [opened at, seconds used]
    left = n
    while left > 0:
        buckets = [b for b in buckets if b[0] + window_s > t]
        used = sum(b[1] for b in buckets)
        if used > budget_s + 1e-9:
            t = buckets[0][0] + window_s
            continue
        level = max(0.0, level - (t - level_at) * rate)
        level_at = t
        if level + 1 > burst + 1e-9:
            t += (level + 1 - burst) / rate
            continue
        level += 1
        sent = 0
        while sent < min(BATCH, left) and used <= budget_s + 1e-9:
            used += cost_s
            sent += 1
            if buckets and buckets[-1][0] + window_s / 10 > t:
                buckets[-1][1] += cost_s
            else:
                buckets.append([t, cost_s])
        left -= sent
    return t


def _limits(sandbox: SandboxProcess) -> dict[str, float]:
    s = sandbox.settings()
    return {
        "rate": float(s["rate"]),
        "burst": float(s["burst"]),
        "cost_s": float(s["op_cost_ms"]) / 1000,
        "budget_s": float(s["op_budget_s"]),
        "window_s": float(s["op_window_s"]),
    }


def _references(n: int, limits: dict[str, float]) -> dict[str, float]:
    from b24app.bitrix import pacing

    share = 1.0 - pacing.Limits().interactive_reserve
    bulk = {**limits, "burst": limits["burst"] * share, "budget_s": limits["budget_s"] * share}
    return {
        "interactive_reserve": pacing.Limits().interactive_reserve,
        "T_min": round(t_min(n, **limits), 2),
        "T_min_bulk": round(t_min(n, **bulk), 2),
        "T_floor_sandbox": round(sandbox_floor(n, **limits), 2),
    }


def _result(
    n: int, sandbox: SandboxProcess, t_actual: float, audits: list[scenario.Audit], **extra: Any
) -> dict[str, Any]:
    refs = _references(n, _limits(sandbox))
    sent = sum(a.sent for a in audits)
    out: dict[str, Any] = {
        "N": n,
        "sandbox": sandbox.settings(),
        **refs,
        "T_actual": round(t_actual, 2),
        "msgs_per_s": round(sent / t_actual, 2) if t_actual > 0 else None,
        "efficiency": round(refs["T_min"] / t_actual, 3) if t_actual > 0 else None,
        "efficiency_vs_bulk": round(refs["T_min_bulk"] / t_actual, 3) if t_actual > 0 else None,
        "efficiency_vs_sandbox_floor": (
            round(refs["T_floor_sandbox"] / t_actual, 3) if t_actual > 0 else None
        ),
        "sent": sent,
        "duplicates": sum(a.duplicates for a in audits),
        "missing": sum(a.missing for a in audits),
        "unexpected": sum(a.unexpected for a in audits),
        "lost": sum(a.lost for a in audits),
        "retried_attempts": sum(a.retries for a in audits),
        "exactly_once": all(
            a.duplicates == a.missing == a.unexpected == a.lost == 0 for a in audits
        ),
        "target": "efficiency >= 0.95",
    }
    out.update(extra)
    return out


def _campaign_case(
    env: BenchEnv,
    *,
    n_per_portal: int,
    portals: int = 1,
    flags: dict[str, Any] | None = None,
    plan: dict[str, Any] | None = None,
    app_env: dict[str, str] | None = None,
    timeout: float = 900.0,
) -> tuple[SandboxProcess, float, list[scenario.Audit], dict[str, Any]]:
    """Run one campaign per sandbox portal at once; returns (sandbox, T_actual, audits, extra)."""
    from b24app.campaigns import services
    from b24app.campaigns.models import Campaign

    reset_app_data()
    users = scenario.users_for(n_per_portal)
    sandbox = SandboxProcess(env, port=PORT, portals=portals, users=users, flags=flags)
    worker = WorkerProcess(env, concurrency=CONCURRENCY, extra_env=app_env)
    load_before = load_average()
    with sandbox, worker:
        campaigns = []
        connected = []
        for index in range(1, portals + 1):
            portal = scenario.connect_portal(sandbox.control, index, **(plan or {}))
            line = scenario.joined_line(portal)
            ids = scenario.active_user_ids(index, users, n_per_portal)
            campaigns.append(scenario.campaign_for(portal, line, ids))
            connected.append(portal)
        for campaign in campaigns:
            scenario.wait_resolved(campaign)
        scenario.quiesce(sandbox.control, connected)
        for campaign in campaigns:
            services.campaign_start(campaign=campaign)
        scenario.wait_finished(campaigns, timeout=timeout)
        rows = list(Campaign.objects.filter(pk__in=[c.pk for c in campaigns]).order_by("pk"))
        audits = [scenario.audit(sandbox.control, c) for c in rows]
        started = min(c.started_at for c in rows if c.started_at)
        finished = max(c.finished_at for c in rows if c.finished_at)
        per_portal = [aware_seconds(c.started_at, c.finished_at) for c in rows]
    extra = {
        "per_portal_T_actual": [round(t, 2) for t in per_portal],
        "worker_concurrency": CONCURRENCY,
        "app_env": app_env or {},
        "load_before": load_before,
        "load_after": load_average(),
    }
    return sandbox, aware_seconds(started, finished), audits, extra


def outreach(env: BenchEnv) -> dict[str, Any]:
    """N = 10 000 on default limits (rate bound)."""
    sandbox, t_actual, audits, extra = _campaign_case(env, n_per_portal=10_000)
    return _result(10_000, sandbox, t_actual, audits, **extra)


def outreach_budget_bound(env: BenchEnv) -> dict[str, Any]:
    """N = 10 000 with 20 ms per message against 48 s per 60 s window (budget bound).

    The app is told the plan's budget (B24_OP_BUDGET_S/B24_OP_WINDOW_S), as a deployment for
    such portals would be, so its pacer waits for the window instead of running into
    OPERATION_TIME_LIMIT.
    """
    flags = {"op_cost_ms": 20, "op_budget_s": 48, "op_window_s": 60}
    app_env = {"B24_OP_BUDGET_S": "48", "B24_OP_WINDOW_S": "60"}
    sandbox, t_actual, audits, extra = _campaign_case(
        env, n_per_portal=10_000, flags=flags, app_env=app_env
    )
    return _result(10_000, sandbox, t_actual, audits, **extra)


def multi_portal(env: BenchEnv) -> dict[str, Any]:
    """10 portals at 0.2 requests/s and a burst of 5, 1 000 recipients each, 2 worker processes.

    Every campaign has the same N, so each portal's own ceiling is the same T_min; the aggregate
    efficiency is T_min over the time from the first start to the last completion, and the
    smallest portal's is T_min over that portal's own start-to-completion time (fairness).
    """
    n, portals = 1_000, 10
    flags = {"rate": 0.2, "burst": 5}
    sandbox, t_actual, audits, extra = _campaign_case(
        env, n_per_portal=n, portals=portals, flags=flags, plan={"rate": 0.2, "burst": 5}
    )
    out = _result(n * portals, sandbox, t_actual, audits, **extra)
    refs = _references(n, _limits(sandbox))
    refs.pop("interactive_reserve")
    per_portal = extra["per_portal_T_actual"]
    out.update(
        {
            "N": n * portals,
            "N_per_portal": n,
            # Portals run side by side, so the whole has the ceiling of one portal.
            **refs,
            "efficiency": round(refs["T_min"] / t_actual, 3),
            "efficiency_vs_bulk": round(refs["T_min_bulk"] / t_actual, 3),
            "efficiency_vs_sandbox_floor": round(refs["T_floor_sandbox"] / t_actual, 3),
            "min_portal_efficiency": round(refs["T_min"] / max(per_portal), 3),
            "per_portal_efficiency": [round(refs["T_min"] / t, 3) for t in per_portal],
            "target": "efficiency >= 0.9, min_portal_efficiency >= 0.8",
        }
    )
    return out


def naive(env: BenchEnv) -> dict[str, Any]:
    """N = 300, one `imopenlines.network.message.add` call per message, as a user would write it.

    A plain loop with `requests`: each call in turn; on QUERY_LIMIT_EXCEEDED it sleeps half a
    second and tries the same message again. No batch, no pacer, no worker.
    """
    from b24app.sandbox.state import LINE_CODE

    n = 300
    users = scenario.users_for(n)
    sandbox = SandboxProcess(env, port=PORT, portals=1, users=users)
    load_before = load_average()
    with sandbox:
        token = sandbox.control.control(
            action="issue_token", portal=1, user=1, install_if_needed=True
        )["token"]
        rest = token["client_endpoint"]
        http = requests.Session()
        auth = token["access_token"]
        http.post(f"{rest}imopenlines.network.join", data={"CODE": LINE_CODE, "auth": auth})
        sandbox.control.control(reset_limits=True)
        ids = scenario.active_user_ids(1, users, n)
        refused = 0
        started = time.monotonic()
        for user_id in ids:
            while True:
                reply = http.post(
                    f"{rest}imopenlines.network.message.add",
                    data={
                        "CODE": LINE_CODE,
                        "USER_ID": user_id,
                        "MESSAGE": f"Hello {user_id}",
                        "auth": auth,
                    },
                    timeout=30,
                )
                if reply.status_code == 503:
                    refused += 1
                    time.sleep(0.5)
                    continue
                reply.raise_for_status()
                break
        t_actual = time.monotonic() - started
        got = scenario.inbox(sandbox.control, token["member_id"])
    limits = _limits(sandbox)
    refs = _references(n, limits)
    return {
        "N": n,
        "sandbox": sandbox.settings(),
        **refs,
        # One request per message: its own floor is (N - b)/r, not the batched ceiling.
        "T_min_one_call_per_message": round(max(0.0, (n - limits["burst"]) / limits["rate"]), 2),
        "T_actual": round(t_actual, 2),
        "msgs_per_s": round(len(got) / t_actual, 2),
        "efficiency": round(refs["T_min"] / t_actual, 3),
        "sent": len(got),
        "duplicates": sum(c - 1 for c in got.values() if c > 1),
        "query_limit_exceeded": refused,
        "load_before": load_before,
        "load_after": load_average(),
        "target": "baseline (T_min of batched sending is 0 s for N = 300)",
    }


CASES = {
    "outreach": outreach,
    "outreach_budget_bound": outreach_budget_bound,
    "naive": naive,
    "multi_portal": multi_portal,
}


def run(env: BenchEnv, only: set[str] | None = None) -> dict[str, Any]:
    _check_formula()
    out: dict[str, Any] = {}
    for key, case in CASES.items():
        if only and key not in only:
            continue
        print(f"   {key} ...", flush=True)
        started = time.monotonic()
        result = case(env)
        result["bench_wall_s"] = round(time.monotonic() - started, 1)
        print(f"   {key}: {json.dumps(result, sort_keys=True)}", flush=True)
        out[key] = result
    return out


def _check_formula() -> None:
    from b24app.bitrix import pacing

    for n, limits in ((10_000, pacing.Limits()), (1_000, pacing.Limits(rate=0.2, burst=5))):
        ours = t_min(
            n,
            rate=limits.rate,
            burst=limits.burst,
            cost_s=0.02,
            budget_s=48,
            window_s=60,
        )
        theirs = pacing.t_min(n, pacing.Limits(limits.rate, limits.burst, 48, 60), 0.02)
        assert abs(ours - theirs) < 1e-9, (ours, theirs)
