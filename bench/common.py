"""Shared pieces of `make bench`: machine facts, timing helpers, results.json."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    from django.conf import settings
    from django.db import connection

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "database": connection.vendor,
        "broker": settings.CELERY_BROKER_URL.split(":", 1)[0],
        "git": _git_head(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _git_head() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return ""


def per_call_seconds(fn: Callable[[], object], *, rounds: int = 7, min_time: float = 0.2) -> float:
    """Median seconds per call over `rounds` rounds of at least `min_time` each."""
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            break
        loops *= 2
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        samples.append((time.perf_counter() - start) / loops)
    return statistics.median(samples)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def save(results: dict[str, Any]) -> None:
    """Merge `results` into bench/results.json (other benchmarks' keys are kept).

    A result that names its database and broker is also kept under
    `variants.<key>.<database>+<broker>`, so a run on another database or broker (Postgres,
    Redis) adds to the file instead of replacing the default run's figures there.
    """
    current: dict[str, Any] = {}
    if RESULTS.exists():
        try:
            current = json.loads(RESULTS.read_text())
        except ValueError:
            current = {}
    current.update(results)
    variants = current.setdefault("variants", {})
    for key, value in results.items():
        if key == "machine" or not isinstance(value, dict):
            continue
        if "database" in value and "broker" in value:
            variants.setdefault(key, {})[f"{value['database']}+{value['broker']}"] = value
    RESULTS.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")


def headline(key: str, value: dict[str, Any]) -> tuple[str, str, str]:
    """One row of the summary table: the key, its main figures, its target."""
    v = value
    if "efficiency" in v and "T_actual" in v:
        text = f"T_min {v['T_min']} s, T_actual {v['T_actual']} s, {v['msgs_per_s']} msg/s"
        text += f", efficiency {v['efficiency']}"
        if "min_portal_efficiency" in v:
            text += f", min portal {v['min_portal_efficiency']}"
        if "duplicates" in v:
            text += f", duplicates {v['duplicates']}"
    elif key == "worker_memory":
        text = (
            f"peak {v['small']['peak_max_process_mib']} / {v['large']['peak_max_process_mib']} MiB"
            f" (1 000 / 10 000), ratio {v['ratio_max_process']}"
        )
    elif "ratio" in v:
        text = f"ratio {v['ratio']}"
        if "preview_p95_ms" in v:
            text += f" (p95 {v['preview_p95_ms']} vs {v['bare_p95_ms']} ms)"
    elif key == "chaos":
        text = f"kills {v['kills']}, lost {v['lost']}, duplicates {v['duplicates']}"
        text += f"; NFR: unknown {v['nfr']['unknown']}, duplicates {v['nfr']['duplicates']}"
    elif key == "refresh_race":
        text = f"refreshes {v['refreshes']}, invalid_grant {v['invalid_grant']} ({v['database']})"
    elif key == "sandbox_faults":
        text = f"wrong_state {v['wrong_state']}, lost {v['lost']}, duplicates {v['duplicates']}"
    elif "tried" in v and "held" in v:
        text = f"held {v['held']} of {v['tried']}"
    else:
        text = ""
    return key, text, str(v.get("target", ""))


def table(rows: list[tuple[str, str, str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)) for r in rows)
