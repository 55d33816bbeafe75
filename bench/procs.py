"""The real processes a benchmark runs against: a bench database, the sandbox, Celery workers.

`prepare()` must run before Django is set up: it points this process (and every subprocess
started later) at a database and a broker of the benchmark's own, so a run never touches the
developer's `db.sqlite3` or queues:

- database: a temporary SQLite file, or, when `DATABASE_URL` names a Postgres server, a fresh
  database `b24bench_<pid>` created on that server and dropped at exit;
- broker: a temporary SQLite file for kombu's SQLAlchemy transport, or `CELERY_BROKER_URL` as
  given (then no other worker may consume from it while the benchmark runs).

`SandboxProcess` is `manage.py sandbox` in a subprocess; `WorkerProcess` is a `CeleryWorker`:
`celery worker` in a subprocess of its own process group, so `kill()` is a SIGKILL to the worker
and its pool at once. The tests' `celery_worker` fixture (tests/plugins/worker.py) uses the same
class.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.common import ROOT

# The app registered with the sandbox (the sandbox's own defaults, also in .env.example).
CLIENT_ID = "local.b24app.sandbox"
CLIENT_SECRET = "sandbox-client-secret-0123456789"
READY_TIMEOUT_S = 90.0
_SEQUENCE = iter(range(1, 1_000_000))


@dataclass
class BenchEnv:
    """Where this run keeps its files and which database and broker it uses."""

    tmp: Path
    database_url: str
    broker_url: str
    pg_admin_url: str = ""
    pg_database: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def subprocess_env(self, **overrides: str) -> dict[str, str]:
        """The environment of every subprocess: this run's database, broker and app identity."""
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "b24app.settings",
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": self.broker_url,
            "B24_SANDBOX": "True",
            "B24_CLIENT_ID": CLIENT_ID,
            "B24_CLIENT_SECRET": CLIENT_SECRET,
            "PYTHONUNBUFFERED": "1",
            **self.extra,
        }
        env.update(overrides)
        return env

    def cleanup(self) -> None:
        if self.pg_database:
            _pg_drop(self.pg_admin_url, self.pg_database)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _pg_connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True)


def _pg_drop(admin_url: str, name: str) -> None:
    with contextlib.suppress(Exception), _pg_connect(admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def prepare(*, keep: bool = False) -> BenchEnv:
    """Choose this run's database and broker, set the environment, set up Django, migrate."""
    tmp = Path(tempfile.mkdtemp(prefix="b24bench-"))
    configured_db = os.environ.get("DATABASE_URL", "")
    env = BenchEnv(tmp=tmp, database_url="", broker_url="")
    if configured_db.startswith(("postgres://", "postgresql://", "pgsql://")):
        name = f"b24bench_{os.getpid()}"
        env.pg_admin_url = _with_path(configured_db.replace("pgsql://", "postgres://"), "/postgres")
        with _pg_connect(env.pg_admin_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        env.pg_database = name
        env.database_url = _with_path(configured_db, f"/{name}")
    elif configured_db and not configured_db.startswith("sqlite"):
        raise SystemExit(f"bench: unsupported DATABASE_URL {configured_db.split(':', 1)[0]}")
    else:
        env.database_url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    env.broker_url = (
        os.environ.get("CELERY_BROKER_URL") or f"sqla+sqlite:///{tmp / 'broker.sqlite3'}"
    )
    if keep or os.environ.get("BENCH_KEEP"):
        print(f"bench: keeping {tmp}", flush=True)
    else:
        atexit.register(env.cleanup)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "b24app.settings",
            "DATABASE_URL": env.database_url,
            "CELERY_BROKER_URL": env.broker_url,
            "B24_SANDBOX": "True",
            "B24_CLIENT_ID": CLIENT_ID,
            "B24_CLIENT_SECRET": CLIENT_SECRET,
            "CELERY_BEAT_SCHEDULE_FILENAME": str(tmp / "beat-schedule"),
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    return env


def reset_app_data() -> None:
    """Forget every portal and what hangs off it (campaigns first: they protect their line)."""
    from b24app.campaigns.models import Campaign
    from b24app.messaging.models import Delivery
    from b24app.portals.models import Portal

    Campaign.objects.all().delete()
    Delivery.objects.all().delete()
    Portal.objects.all().delete()


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class SandboxProcess:
    """`manage.py sandbox` in a subprocess, with its control API client."""

    def __init__(
        self,
        env: BenchEnv,
        *,
        port: int,
        portals: int = 1,
        users: int = 300,
        flags: dict[str, Any] | None = None,
        nfr: bool = False,
        name: str = "sandbox",
    ) -> None:
        from b24app.sandbox.control import ControlClient

        self.env = env
        self.port = port
        self.portals = portals
        self.users = users
        self.flags = dict(flags or {})
        self.nfr = nfr
        serial = next(_SEQUENCE)
        self.state_file = env.tmp / f"{name}-{serial}-state.json"
        self.log_path = env.tmp / f"{name}-{serial}.log"
        self.hub_url = f"http://localhost:{port}"
        self.control = ControlClient(self.hub_url, timeout=60.0)
        self.process: subprocess.Popen[bytes] | None = None

    def settings(self) -> dict[str, Any]:
        """What results record about this sandbox."""
        from b24app.sandbox.state import SETTING_DEFAULTS

        keys = ("rate", "burst", "op_cost_ms", "op_budget_s", "op_window_s")
        values = {k: SETTING_DEFAULTS[k] for k in keys}
        values.update({k.replace("-", "_"): v for k, v in self.flags.items()})
        return {"portals": self.portals, "users": self.users, "nfr": self.nfr, **values}

    def start(self) -> SandboxProcess:
        busy = [p for p in range(self.port, self.port + self.portals + 1) if not port_free(p)]
        if busy:
            raise RuntimeError(f"sandbox ports busy: {busy}")
        command = [
            sys.executable, "manage.py", "sandbox",
            "--port", str(self.port),
            "--portals", str(self.portals),
            "--users", str(self.users),
            "--state", str(self.state_file),
            "--fresh",
        ]  # fmt: skip
        for key, value in self.flags.items():
            command += [f"--{key.replace('_', '-')}", str(value)]
        if self.nfr:
            command.append("--nfr")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env.subprocess_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                self.control.state()
                break
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "the sandbox did not start:\n" + self.log_path.read_text()[-3000:]
                    ) from None
                time.sleep(0.2)
        self.control.control(event_delay_ms=0)
        return self

    def stop(self) -> None:
        """SIGTERM (the sandbox saves its state file), then wait."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def portal_info(self, index: int) -> dict[str, Any]:
        info: dict[str, Any] = self.control.state()["portals"][str(index)]
        return info


class CeleryWorker:
    """A Celery worker (prefork, optionally with embedded beat) in a process group of its own.

    `kill()` is a SIGKILL to the worker and its pool at once (no shutdown, no acks), `stop()` a
    warm shutdown, `restart()` starts it again under the same node name, as a restarted worker
    would be. Shared by the benchmarks (`WorkerProcess`) and the tests' `celery_worker` fixture
    (tests/plugins/worker.py), which only say how to name, place and configure it.
    """

    ready_timeout_s = READY_TIMEOUT_S
    stop_timeout_s = 20.0

    def __init__(self, *, tmp: Path, hostname: str, log_name: str, cwd: Path = ROOT) -> None:
        self.tmp = tmp
        self.hostname = hostname
        self.log_name = log_name
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.logs: list[Path] = []

    def spawn(
        self, *, concurrency: int, beat: bool, env: dict[str, str], wait: bool = True
    ) -> None:
        """Start the worker process (and wait until it says it is ready)."""
        if self.running:
            raise RuntimeError("the worker is already running")
        self.starts += 1
        log_path = self.tmp / f"{self.log_name}-{next(_SEQUENCE)}.log"
        self.logs.append(log_path)
        command = [
            sys.executable, "-m", "celery", "-A", "b24app", "worker",
            "--hostname", self.hostname,
            "--pool", "prefork",
            "--concurrency", str(concurrency),
            "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        if beat:
            command += ["--beat", "--schedule", str(self.tmp / f"{self.log_name}-beat")]
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() reaches the pool
            )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the worker logs that it is ready (after its start-up recovery)."""
        timeout = self.ready_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        path = self.logs[-1]
        while time.monotonic() < deadline:
            text = path.read_text(errors="replace") if path.exists() else ""
            if " ready." in text:
                return
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the worker exited early:\n{text[-4000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"the worker was not ready in {timeout:.0f} s:\n{self.log()[-4000:]}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def pids(self) -> list[int]:
        """The worker's main process and its pool (its process group)."""
        if not self.running or self.process is None:
            return []
        group = self.process.pid
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.getpgid(int(entry.name)) == group:
                    found.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
        return sorted(found)

    def kill(self) -> None:
        """SIGKILL the worker and its pool at once: no shutdown, no acks, no cleanup."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self, timeout: float | None = None) -> None:
        """Warm shutdown (SIGTERM), falling back to SIGKILL."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=self.stop_timeout_s if timeout is None else timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            self.kill()

    def log(self) -> str:
        """Everything every start of this worker logged so far."""
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())


class WorkerProcess(CeleryWorker):
    """The benchmarks' worker: this run's database and broker, embedded beat by default."""

    def __init__(
        self,
        env: BenchEnv,
        *,
        concurrency: int = 2,
        beat: bool = True,
        name: str = "b24bench",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(tmp=env.tmp, hostname=f"{name}@localhost", log_name=name)
        self.env = env
        self.concurrency = concurrency
        self.beat = beat
        self.name = name
        self.extra_env = dict(extra_env or {})

    def start(self, *, wait: bool = True) -> WorkerProcess:
        """Start under the same node name every time, as a restarted worker would."""
        self.spawn(
            concurrency=self.concurrency,
            beat=self.beat,
            env=self.env.subprocess_env(**self.extra_env),
            wait=wait,
        )
        return self

    def restart(self, **kwargs: Any) -> WorkerProcess:
        self.kill()
        return self.start(**kwargs)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size (VmHWM) of a live process, in KiB; 0 if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (other work on the machine shows up here)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def aware_seconds(start: datetime | None, end: datetime | None) -> float:
    if start is None or end is None:
        return float("nan")
    return (end.astimezone(UTC) - start.astimezone(UTC)).total_seconds()
