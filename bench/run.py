"""`make bench`: run the benchmarks, print a table and merge results into bench/results.json.

Every figure is read against a baseline or a ceiling measured or computed in the same run (see
docs/benchmarks.md). The run has a database and a broker of its own (bench.procs.prepare): a
temporary SQLite file and SQLite broker by default, a fresh database on the server named by
DATABASE_URL, or the broker named by CELERY_BROKER_URL.

Usage: python -m bench.run [--only NAME ...]   (a module or a result key, e.g. `naive`)
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from typing import Any

# module -> the result keys it writes
BENCHMARKS: dict[str, tuple[str, ...]] = {
    "validator": ("validator",),
    "compose": ("compose",),
    "outreach": ("outreach", "outreach_budget_bound", "naive", "multi_portal"),
    "worker_memory": ("worker_memory",),
}


def selected(only: list[str] | None, benchmarks: dict[str, tuple[str, ...]]) -> dict[str, set[str]]:
    """Which modules to run and, for each, which of its keys.

    A name that is a result key selects that key alone (`outreach` is the key, not the module);
    any other module name selects all of the module's keys.
    """
    if not only:
        return {name: set(keys) for name, keys in benchmarks.items()}
    chosen: dict[str, set[str]] = {}
    for item in only:
        owners = [name for name, keys in benchmarks.items() if item in keys]
        if owners:
            chosen.setdefault(owners[0], set()).add(item)
        elif item in benchmarks:
            chosen.setdefault(item, set()).update(benchmarks[item])
        else:
            raise SystemExit(f"unknown benchmark {item!r}; one of {sorted(benchmarks)}")
    return chosen


def run_all(
    benchmarks: dict[str, tuple[str, ...]], only: list[str] | None, *, package: str = "bench"
) -> int:
    """Prepare the run's processes and database, run the chosen modules, save what they give."""
    from bench import procs

    plan = selected(only, benchmarks)
    env = procs.prepare()
    from bench.common import headline, machine, save, table

    results: dict[str, Any] = {"machine": machine()}
    failures = 0
    started = time.monotonic()
    for name, keys in plan.items():
        module = importlib.import_module(f"{package}.{name}")
        print(f"== {name}", flush=True)
        try:
            out = module.run(env, keys)
        except Exception as exc:  # noqa: BLE001 - report it and go on with the others
            failures += 1
            print(f"{name} failed: {exc!r}", file=sys.stderr, flush=True)
            continue
        facts = machine()
        for value in out.values():
            value.setdefault("database", facts["database"])
            value.setdefault("broker", facts["broker"])
            value["machine"] = facts
        results.update(out)
        save(out)
        for key, value in out.items():
            print(f"{key}: {json.dumps(value, sort_keys=True)}", flush=True)
    rows = [headline(k, v) for k, v in results.items() if k != "machine" and isinstance(v, dict)]
    if rows:
        print(table([("result", "figures", "target"), *rows]), flush=True)
    results["machine"]["run_wall_s"] = round(time.monotonic() - started, 1)
    results["machine"]["load_avg_end"] = machine()["load_avg"]
    save({"machine": results["machine"]})
    print("results written to bench/results.json")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", default=None, help="modules or result keys")
    args = parser.parse_args()
    return run_all(BENCHMARKS, args.only)


if __name__ == "__main__":
    sys.exit(main())
