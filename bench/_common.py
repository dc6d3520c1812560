"""Shared helpers of the benchmark scripts (not a test; nothing here is asserted)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BENCH_REDIS_URL = "redis://127.0.0.1:6379/13"


def setup_django(**env: str) -> None:
    """Configure Django for a bench process (DEBUG settings, the bench's Redis db)."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("REDIS_URL", BENCH_REDIS_URL)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "yesgoddess.settings"
    import django

    django.setup()


def child_env(**extra: str) -> dict[str, str]:
    env = {"DEBUG": "1", "REDIS_URL": BENCH_REDIS_URL, **os.environ, "PYTHONPATH": str(ROOT)}
    env.update(extra)
    return env


def run(args: list[str], **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=child_env(**extra_env), capture_output=True, text=True, check=True)


def median(values: list[float]) -> float:
    return statistics.median(values)


BENCH_DB = "yesgoddess_bench"
BENCH_DB_URL = f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}"


def prepare_bench_db(name: str = BENCH_DB) -> str:
    """Create bench database `name` if missing and migrate it; return its URL."""
    import psycopg

    url = f"postgres://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=child_env(DATABASE_URL=url), check=True)
    return url
