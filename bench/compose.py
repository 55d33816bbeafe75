"""`compose`: the composer's preview/validate round trip against a bare Django view, under gunicorn.

One gunicorn (2 sync workers, DEBUG off) serves the app on loopback. Four client threads send
2 000 preview requests (`messaging:preview`, an htmx POST carrying a frame token issued with
`portals.frame.issue_token`, the full composer form: text, a one-block attachment, a one-button
keyboard) and 2 000 requests to `/healthz` (`portals.views.healthz`: no database, no template),
in alternating blocks of 200, so both see the same machine. Latency is measured in the client,
connection included (sync workers close the connection after each response).

`ratio` = p95(preview) / p95(bare): the cost of our preview beyond what Django itself costs on
this machine. Target: ratio <= 2.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import requests

from bench.common import ROOT, percentile
from bench.procs import BenchEnv, load_average, port_free, reset_app_data

PORT = 8210
WORKERS = 2
CLIENTS = 4
REQUESTS = 2000
BLOCK = 200
WARMUP = 40


def _form(line_id: int) -> dict[str, str]:
    """What the composer posts for its live preview (the same fields as the browser sends)."""
    return {
        "line": str(line_id),
        "user_id": "9",
        "recipient_name": "Irina",
        "message": "Hello [b]{NAME}[/b], the [url=https://example.com/r]release notes[/url].",
        "url_preview": "on",
        "attach-color": "#29619b",
        "attach-0-kind": "LINK",
        "attach-0-link": "https://example.com/changelog",
        "attach-0-name": "Changelog",
        "attach-0-desc": "What changed in 2.4",
        "attach-1-kind": "GRID",
        "attach-1-item-0-display": "LINE",
        "attach-1-item-0-name": "Version",
        "attach-1-item-0-value": "2.4",
        "attach-1-item-1-display": "LINE",
        "attach-1-item-1-name": "Date",
        "attach-1-item-1-value": "2026-11-25",
        "kb-0-kind": "button",
        "kb-0-text": "Open",
        "kb-0-link": "https://example.com",
        "kb-0-display": "LINE",
    }


def _serve(env: BenchEnv) -> subprocess.Popen[bytes]:
    if not port_free(PORT):
        raise RuntimeError(f"port {PORT} is busy")
    log = (env.tmp / "gunicorn.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "b24app.wsgi:application", "--workers", str(WORKERS)]
        + ["--worker-class", "sync", "--bind", f"127.0.0.1:{PORT}", "--log-level", "warning"],
        cwd=ROOT,
        env=env.subprocess_env(DJANGO_DEBUG="False", SECURE_SSL_REDIRECT="False"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{PORT}/healthz", timeout=2).status_code == 200:
                return process
        except requests.RequestException:
            time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError("gunicorn did not start: " + (env.tmp / "gunicorn.log").read_text()[-2000:])


# (kind, URL, form data or None for a GET, headers)
Job = tuple[str, str, dict[str, str] | None, dict[str, str]]


def _blast(jobs: list[Job]) -> tuple[list[tuple[str, float]], list[str]]:
    """Run the jobs on CLIENTS threads; returns (kind, seconds) per request and any failures."""
    work: queue.Queue[Job] = queue.Queue()
    for job in jobs:
        work.put(job)
    timings: list[tuple[str, float]] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        session = requests.Session()
        while True:
            try:
                kind, url, data, headers = work.get_nowait()
            except queue.Empty:
                return
            started = time.perf_counter()
            if data is None:
                response = session.get(url, headers=headers, timeout=30)
            else:
                response = session.post(url, data=data, headers=headers, timeout=30)
            elapsed = time.perf_counter() - started
            with lock:
                timings.append((kind, elapsed))
                if response.status_code != 200:
                    failures.append(f"{kind}: {response.status_code}")

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return timings, failures


def run(env: BenchEnv, only: set[str] | None = None) -> dict[str, Any]:
    from django.urls import reverse

    from b24app.messaging.models import Line
    from b24app.portals import frame
    from b24app.portals.models import Portal

    reset_app_data()
    portal = Portal.objects.create(
        member_id="0b24be4c40b24be4c40b24be4c40b24b",
        domain="localhost:8121",
        https=False,
        client_endpoint="http://localhost:8121/rest/",
        server_endpoint="http://localhost:8120/rest/",
        access_token="unused",
        refresh_token="unused",
    )
    line = Line.objects.create(
        portal=portal,
        code="b24appsandboxline000000000000001",
        name="Support",
        bot_id=1001,
        join_status=Line.JoinStatus.JOINED,
    )
    token = frame.issue_token(portal=portal, user_id=7, admin=False, language="en")
    base = f"http://127.0.0.1:{PORT}"
    preview: Job = (
        "preview",
        base + reverse("messaging:preview"),
        _form(line.pk),
        {"X-Frame-Token": token, "HX-Request": "true", "HX-Target": "preview"},
    )
    bare: Job = ("bare", base + reverse("portals:healthz"), None, {})
    load_before = load_average()
    server = _serve(env)
    try:
        warm, failed = _blast([preview, bare] * WARMUP)
        if failed:
            raise RuntimeError(f"warm-up failed: {failed[:5]}")
        sample = requests.post(preview[1], data=preview[2], headers=preview[3], timeout=30)
        if "b24-chat-message" not in sample.text:
            raise RuntimeError("the preview did not render a message: " + sample.text[:300])
        timings: list[tuple[str, float]] = []
        failures: list[str] = []
        started = time.perf_counter()
        for block in range(2 * REQUESTS // BLOCK):
            job = preview if block % 2 == 0 else bare
            got, bad = _blast([job] * BLOCK)
            timings += got
            failures += bad
        wall = time.perf_counter() - started
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    previews = [t for kind, t in timings if kind == "preview"]
    bares = [t for kind, t in timings if kind == "bare"]

    def ms(values: list[float], pct: float) -> float:
        return round(percentile(values, pct) * 1000, 2)

    return {
        "compose": {
            "server": f"gunicorn {WORKERS} sync workers, DEBUG off",
            "clients": CLIENTS,
            "requests": {"preview": len(previews), "bare": len(bares)},
            "failures": len(failures),
            "preview_p50_ms": ms(previews, 50),
            "preview_p95_ms": ms(previews, 95),
            "bare_p50_ms": ms(bares, 50),
            "bare_p95_ms": ms(bares, 95),
            "preview_bytes": len(sample.content),
            "ratio": round(percentile(previews, 95) / percentile(bares, 95), 2),
            "wall_s": round(wall, 1),
            "load_before": load_before,
            "load_after": load_average(),
            "target": "ratio <= 2",
        }
    }
