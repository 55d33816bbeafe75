"""`worker_memory`: peak RSS of a Celery worker that resolves and sends 1 000 vs 10 000 recipients.

For each size a fresh worker (prefork, 2 pool processes, embedded beat) runs one campaign end to
end against a sandbox subprocess whose limits are raised (rate 50/s, burst 500) since this is
about memory, not pacing. The peak resident set (`VmHWM`) of every process in the worker's
process group is sampled twice a second until the campaign completes. Reported: the largest
single process and the sum over the group, per size, and their ratio 10 000 : 1 000.
Flat is the target (ratio near 1): recipients are streamed in chunks, never held all at once.
"""

from __future__ import annotations

import threading
from typing import Any

from bench import scenario
from bench.procs import (
    BenchEnv,
    SandboxProcess,
    WorkerProcess,
    aware_seconds,
    load_average,
    reset_app_data,
    vm_hwm_kib,
)

PORT = 8120
SIZES = (1_000, 10_000)
FAST = {"rate": 50, "burst": 500}


def _measure(env: BenchEnv, size: int) -> dict[str, Any]:
    from b24app.campaigns import services
    from b24app.campaigns.models import Campaign

    reset_app_data()
    users = scenario.users_for(size)
    sandbox = SandboxProcess(env, port=PORT, users=users, flags=FAST)
    worker = WorkerProcess(env, concurrency=2, name=f"b24mem{size}")
    peaks: dict[int, int] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            for pid in worker.pids():
                peaks[pid] = max(peaks.get(pid, 0), vm_hwm_kib(pid))

    with sandbox, worker:
        idle = {pid: vm_hwm_kib(pid) for pid in worker.pids()}
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        portal = scenario.connect_portal(sandbox.control, 1, rate=50.0, burst=500)
        line = scenario.joined_line(portal)
        ids = scenario.active_user_ids(1, users, size)
        campaign = scenario.wait_resolved(scenario.campaign_for(portal, line, ids))
        services.campaign_start(campaign=campaign)
        scenario.wait_finished([campaign], timeout=900)
        for pid in worker.pids():
            peaks[pid] = max(peaks.get(pid, 0), vm_hwm_kib(pid))
        stop.set()
        sampler.join()
        campaign = Campaign.objects.get(pk=campaign.pk)
        result = scenario.audit(sandbox.control, campaign)
    return {
        "recipients": size,
        "sent": result.sent,
        "duplicates": result.duplicates,
        "T_actual": round(aware_seconds(campaign.started_at, campaign.finished_at), 2),
        "processes": len(peaks),
        "idle_max_mib": round(max(idle.values(), default=0) / 1024, 1),
        "peak_max_process_mib": round(max(peaks.values(), default=0) / 1024, 1),
        "peak_sum_mib": round(sum(peaks.values()) / 1024, 1),
    }


def run(env: BenchEnv, only: set[str] | None = None) -> dict[str, Any]:
    load_before = load_average()
    small, large = (_measure(env, size) for size in SIZES)
    return {
        "worker_memory": {
            "small": small,
            "large": large,
            "ratio_max_process": round(
                large["peak_max_process_mib"] / small["peak_max_process_mib"], 3
            ),
            "ratio_sum": round(large["peak_sum_mib"] / small["peak_sum_mib"], 3),
            "worker": "celery prefork, 2 pool processes, embedded beat",
            "load_before": load_before,
            "load_after": load_average(),
            "target": "flat (ratio close to 1)",
        }
    }
