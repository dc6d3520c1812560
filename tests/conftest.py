from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from yesgoddess.core.redis import redis_connection

from . import moved_clock

ROOT = Path(__file__).resolve().parent.parent
FORKING = "jobs.rq_classes.DjangoWorker"
SIMPLE = "jobs.rq_classes.DjangoSimpleWorker"


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """TEST_DB_SUFFIX=x gives this test run its own database (test_<name>_x), so two runs
    on one machine do not fight over one; pair it with its own REDIS_URL database."""
    suffix = os.environ.get("TEST_DB_SUFFIX")
    if suffix:
        for db in settings.DATABASES.values():
            db.setdefault("TEST", {})["NAME"] = f"test_{db['NAME']}_{suffix}"


@pytest.fixture(autouse=True)
def clean_redis() -> Iterator[None]:
    """Each test starts with an empty Redis database (the test run's own, see pytest_env)."""
    redis_connection().flushdb()
    yield
    redis_connection().flushdb()


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path: Path) -> Path:
    """Each test stores files in its own directory (worker processes are told too)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MEDIA_ROOT.mkdir()
    return settings.MEDIA_ROOT


def worker_env() -> dict[str, str]:
    """Environment for processes that must see the test database and the test Redis."""
    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        REDIS_URL=settings.REDIS_URL,
        EXTRA_JOB_MODULES=",".join(settings.EXTRA_JOB_MODULES),
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        CLAMD_SOCKET=settings.CLAMD_SOCKET,
        DEBUG="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(moved_clock.subprocess_env())
    return env


def manage(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env or worker_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def run_worker() -> Callable[..., subprocess.CompletedProcess]:
    """Run a real RQ worker in burst mode until its queues are empty."""

    def run(*queues: str, worker_class: str = FORKING, timeout: float = 120) -> subprocess.CompletedProcess:
        result = manage(
            "rqworker", "--burst", "--worker-class", worker_class, *(queues or ("default",)), timeout=timeout
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    return run


class BackgroundWorker:
    def __init__(
        self, queues: tuple[str, ...], worker_class: str, with_scheduler: bool, env: dict[str, str] | None = None
    ) -> None:
        args = [sys.executable, "manage.py", "rqworker", "--worker-class", worker_class]
        if with_scheduler:
            args.append("--with-scheduler")
        self.process = subprocess.Popen(
            [*args, *queues],
            cwd=ROOT,
            env={**worker_env(), **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def descendants(self) -> list[int]:
        """Child processes, including RQ's work horse (which moves to its own session)."""
        parents: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(stat.parent.name)] = int(fields[1])
        found, frontier = [], [self.process.pid]
        while frontier:
            children = [pid for pid, ppid in parents.items() if ppid in frontier]
            found += children
            frontier = children
        return found

    def kill(self, sig: int = signal.SIGTERM) -> str:
        if self.process.poll() is None:
            if sig == signal.SIGKILL:
                for pid in self.descendants():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
            os.killpg(self.process.pid, sig)
        try:
            out, _ = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            out, _ = self.process.communicate()
        return out


@pytest.fixture
def background_worker() -> Iterator[Callable[..., BackgroundWorker]]:
    started: list[BackgroundWorker] = []

    def start(
        *queues: str, worker_class: str = FORKING, with_scheduler: bool = True, env: dict[str, str] | None = None
    ) -> BackgroundWorker:
        worker = BackgroundWorker(queues or ("default",), worker_class, with_scheduler, env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill(signal.SIGKILL)


def wait_until(predicate: Callable[[], object], timeout: float = 30, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
