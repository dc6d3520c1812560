"""failed-login-monitor over 1,000,000 login attempts of the last day: the time of its one
aggregate query (median of 5) and its plan, which must use the partial index on recent
failures (login_failures_recent_idx) rather than read the table.
Usage: python bench/failed_login_monitor.py [--attempts 1000000]
"""

from __future__ import annotations

import argparse
import subprocess
import time

from _common import PYTHON, ROOT, child_env, median, setup_django

DB_URL = "postgres://postgres@127.0.0.1:5432/yesgoddess_bench"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attempts", type=int, default=1_000_000)
    options = parser.parse_args()
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=child_env(DATABASE_URL=DB_URL), check=True
    )
    setup_django(DATABASE_URL=DB_URL)
    from django.db import connection
    from django.utils import timezone

    from yesgoddess.accounts.security import (
        ALERT_ABOVE,
        FAILURES_SQL,
        IP_ACCOUNTS,
        IP_FAILURES,
        WINDOW,
        monitor_failed_logins,
    )

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE login_attempts")
        # Spread over the last 24 h: 50,000 accounts, 20,000 IPs, one attempt in three fails.
        cursor.execute(
            "INSERT INTO login_attempts (email, ip_address, user_agent, success, failure_reason, timestamp) "
            "SELECT 'user' || (g %% 50000) || '@example.com', "
            "('10.' || (g %% 200) || '.' || (g %% 100) || '.1')::inet, "
            "'bench', g %% 3 <> 0, CASE WHEN g %% 3 = 0 THEN 'INVALID_PASSWORD' ELSE '' END, "
            "now() - (random() * interval '24 hours') FROM generate_series(1, %s) g",
            [options.attempts],
        )
        cursor.execute("VACUUM ANALYZE login_attempts")
        now = timezone.now()
        params = [now - WINDOW, now, ALERT_ABOVE, IP_FAILURES, IP_ACCOUNTS]
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + FAILURES_SQL, params)
        plan = [row[0] for row in cursor.fetchall()]
        times = []
        for _ in range(5):
            began = time.perf_counter()
            cursor.execute(FAILURES_SQL, params)
            cursor.fetchall()
            times.append(time.perf_counter() - began)
    began = time.perf_counter()
    result = monitor_failed_logins()
    job_seconds = time.perf_counter() - began
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE login_attempts, security_alerts")
    print(f"failed-login-monitor over {options.attempts} attempts in the last day:")
    print(
        f"  aggregate query: median {median(times) * 1000:.1f} ms of 5; whole job {job_seconds * 1000:.0f} ms "
        f"({result})"
    )
    print("  plan:\n    " + "\n    ".join(plan))
    print("goal: one query that uses an index, under 1 s")


if __name__ == "__main__":
    main()
