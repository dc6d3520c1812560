"""Bulk delete: a cleanup job over N expired rows among N live ones, against one plain SQL
DELETE of the same rows measured in the same run on the same data.

Jobs: idempotency-cleanup (idempotency keys), token-cleanup (verification tokens),
session-cleanup (Django sessions). Reports wall time, the ratio, the job's longest single
statement (each statement is its own transaction) and the job process's peak RSS, for
two table sizes to show that memory does not grow with the row count.
Usage: python bench/bulk_delete.py [--jobs idempotency-cleanup,token-cleanup,session-cleanup]
                                   [--sizes 200000,1000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from dataclasses import dataclass

from _common import PYTHON, ROOT, child_env, median, setup_django

BENCH_DB = "yesgoddess_bench"
DB_URL = f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}"

CHILD = """
import json, resource, sys, time
sys.path.insert(0, "bench")
from _common import setup_django
setup_django()
from jobs.runtime import execute
began = time.perf_counter()
result = execute(sys.argv[1])
seconds = time.perf_counter() - began
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "maxrss_mb": peak_mb, **result}))
"""

# Every other row expired (worst case: every block holds both kinds).
EXPIRED = "CASE WHEN g %% 2 = 0 THEN now() - interval '1 hour' ELSE now() + interval '1 day' END"


@dataclass(frozen=True)
class Case:
    table: str
    fill: str  # INSERT of 2 * N rows, params: (user_id, 2 * N)
    plain_delete: str


CASES = {
    "idempotency-cleanup": Case(
        "idempotency_keys",
        "INSERT INTO idempotency_keys (user_id, key, entity_type, processed, created_at, expires_at) "
        f"SELECT %s, 'key-' || g, 'job', false, now(), {EXPIRED} FROM generate_series(1, %s) g",
        "DELETE FROM idempotency_keys WHERE expires_at < now()",
    ),
    "token-cleanup": Case(
        "verification_tokens",
        "INSERT INTO verification_tokens (user_id, token_hash, created_at, expires) "
        f"SELECT %s, md5(g::text), now(), {EXPIRED} FROM generate_series(1, %s) g",
        "DELETE FROM verification_tokens WHERE expires < now()",
    ),
    "session-cleanup": Case(
        "django_session",
        "INSERT INTO django_session (session_key, session_data, expire_date) "
        f"SELECT md5(g::text) || %s, repeat('x', 120), {EXPIRED} FROM generate_series(1, %s) g",
        "DELETE FROM django_session WHERE expire_date < now()",
    ),
}


def ensure_database() -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone():
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=child_env(DATABASE_URL=DB_URL), check=True
    )


def bench_user(cursor) -> int:
    cursor.execute(
        "INSERT INTO users (password, is_superuser, username, first_name, last_name, email, is_staff, is_active, "
        "date_joined, role, lock_reason) VALUES ('', false, 'bench', '', '', '', false, true, now(), 'VIEWER', '') "
        "ON CONFLICT (username) DO NOTHING"
    )
    cursor.execute("SELECT id FROM users WHERE username = 'bench'")
    return cursor.fetchone()[0]


def fill(cursor, case: Case, expired: int) -> None:
    """`expired` expired rows interleaved with as many live ones, then VACUUM ANALYZE and
    CHECKPOINT so that both contenders start from the same state."""
    cursor.execute(f"TRUNCATE {case.table}")
    cursor.execute(case.fill, [bench_user(cursor), expired * 2])
    cursor.execute(f"VACUUM ANALYZE {case.table}")
    cursor.execute("CHECKPOINT")


def plain_delete(cursor, case: Case) -> tuple[float, int]:
    began = time.perf_counter()
    cursor.execute(case.plain_delete)
    return time.perf_counter() - began, cursor.rowcount


def job_delete(job: str) -> dict:
    out = subprocess.run(
        [PYTHON, "-c", CHILD, job],
        cwd=ROOT,
        env=child_env(DATABASE_URL=DB_URL),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", default=",".join(CASES))
    parser.add_argument("--sizes", default="200000,1000000")
    parser.add_argument("--rounds", type=int, default=2)
    options = parser.parse_args()
    ensure_database()
    setup_django(DATABASE_URL=DB_URL)
    from django.db import connection

    print("bulk delete: cleanup job vs one plain DELETE (same rows, same run)")
    print(
        f"{'job':20} {'expired':>9} {'live':>9} {'plain s':>8} {'job s':>7} {'ratio':>6} {'stmts':>6} "
        f"{'longest stmt':>12} {'peak RSS':>9}"
    )
    for job in options.jobs.split(","):
        case = CASES[job]
        for expired in (int(s) for s in options.sizes.split(",")):
            plain, ours, reports = [], [], []
            for _ in range(options.rounds):
                with connection.cursor() as cursor:
                    fill(cursor, case, expired)
                    seconds, count = plain_delete(cursor, case)
                    assert count == expired, (count, expired)
                    plain.append(seconds)
                    fill(cursor, case, expired)
                report = job_delete(job)
                assert report["deleted"] == expired, report
                ours.append(report["seconds"])
                reports.append(report)
            worst_stmt = max(r.get("longest_statement_ms", 0) for r in reports)
            peak = max(r["maxrss_mb"] for r in reports)
            print(
                f"{job:20} {expired:9d} {expired:9d} {median(plain):8.2f} {median(ours):7.2f} "
                f"{median(ours) / median(plain):5.2f}x {reports[-1].get('statements', 0):6d} {worst_stmt:9.0f} ms "
                f"{peak:6.0f} MB"
            )
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {case.table}")
    print("goal: ratio <= 1.5x, peak RSS < 150 MB at any size, longest statement (= transaction) < 1 s")


if __name__ == "__main__":
    main()
