"""`make bench`: run the benchmarks, print a table and merge results into bench/results.json.

Every figure is a ratio against a baseline measured in the same run (see docs/benchmarks.md).
Usage: python -m bench.run [--only NAME ...]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Any

BENCHMARKS = ["validator", "compose", "outreach", "worker_memory"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", default=None, help="benchmark modules to run")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "b24app.settings")
    import django

    django.setup()
    from bench.common import machine, save

    results: dict[str, Any] = {"machine": machine()}
    failures = 0
    for name in args.only or BENCHMARKS:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError:
            print(f"{name}: not available yet", file=sys.stderr)
            continue
        print(f"== {name}", flush=True)
        try:
            out = module.run()
        except Exception as exc:  # noqa: BLE001 - report and go on with the others
            failures += 1
            print(f"{name} failed: {exc!r}", file=sys.stderr)
            continue
        results.update(out)
        for key, value in out.items():
            print(f"{key}: {json.dumps(value, sort_keys=True)}", flush=True)
    save(results)
    print("results written to bench/results.json")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
