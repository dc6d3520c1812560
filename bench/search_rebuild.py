"""Full search rebuild: `search-index-update.rebuild` (keyset batches sized to
SEARCH_REBUILD_BATCH_MS, each its own transaction) against one plain
`UPDATE ip_assets SET search_vector = <the same expression>` over the whole table,
measured in the same run from the same starting state.

200,000 assets (titles of 2-5 words, descriptions of 20-40, three tags) drawn from a
5,000-word vocabulary with a skewed (Zipf-like) frequency, generated in SQL. Scenarios:

- cold: every vector NULL (a fresh column, or a changed expression): both write every row.
- warm: every vector already current (the usual Sunday): the baseline rewrites every row,
  the rebuild only compares (it writes rows whose vector changed).

Before each timed run: vectors reset to the scenario's state, rows put back in key order
(CLUSTER), VACUUM ANALYZE, CHECKPOINT;
the order of the two alternates between rounds. Both run in this process on Django's
connection. Also reported: the longest single UPDATE of the rebuild (goal < 1 s: no
batch holds its row locks, or blocks a writer of those rows, for longer).
Its own database (`yesgoddess_bench_search`, shared with search_query.py and
search_updates.py).
Usage: python bench/search_rebuild.py [--assets 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import time

from _common import median, prepare_bench_db, setup_django

BENCH_DB = "yesgoddess_bench_search"
KEY_PREFIX = "bench/search/"


def vocabulary(size: int = 5000) -> list[str]:
    """Pronounceable made-up words (no stop words), the same every run."""
    rng = random.Random(7)
    onsets = ["b", "c", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "v", "br", "st", "tr", "gl", "pl"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou"]
    codas = ["", "n", "r", "s", "l", "m", "nd", "st"]
    words: dict[str, None] = {}
    while len(words) < size:
        syllables = rng.choice([2, 2, 3, 3, 4])
        words["".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(syllables))] = None
    return list(words)


def ensure_assets(count: int) -> int:
    """Make sure `count` bench assets exist (kept between runs); return the user's id."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    user, _ = get_user_model().objects.get_or_create(username="bench-search")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ip_assets WHERE storage_key LIKE %s", [KEY_PREFIX + "%"])
        have = cursor.fetchone()[0]
        if have == count:
            return user.pk
        print(f"generating {count} assets ...", flush=True)
        cursor.execute("DELETE FROM ip_assets WHERE storage_key LIKE %s", [KEY_PREFIX + "%"])
        cursor.execute("SELECT setseed(0.42)")
        # (s.i in the index ties the aggregate to its subquery, so it is computed per row)
        pick = "w[1 + floor(array_length(w, 1) * power(random(), 2))::int + 0 * s.i]"
        cursor.execute(
            f"""
            INSERT INTO ip_assets (title, description, type, storage_key, original_filename, file_size,
              mime_type, declared_mime_type, version, metadata, status, scan_status, created_by_id,
              created_at, updated_at)
            SELECT
              (SELECT string_agg({pick}, ' ') FROM generate_series(1, 2 + mod(g, 4)) s(i)),
              (SELECT string_agg({pick}, ' ') FROM generate_series(1, 20 + mod(g, 21)) s(i)),
              'IMAGE', %(prefix)s || g, 'x.jpg', 1000, 'image/jpeg', 'image/jpeg', 1,
              jsonb_build_object('tags', (SELECT jsonb_agg({pick}) FROM generate_series(1, 3) s(i))),
              (ARRAY['APPROVED', 'PUBLISHED', 'REVIEW', 'DRAFT'])[1 + mod(g, 4)], 'CLEAN', %(user)s, now(), now()
            FROM (SELECT %(words)s::text[] AS w) v, generate_series(1, %(count)s) g
            """,
            {"prefix": KEY_PREFIX, "user": user.pk, "words": vocabulary(), "count": count},
        )
    return user.pk


def settle(cluster: bool = False) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        if cluster:
            # Rows back in primary-key order: every timed run starts from the same physical
            # state (each run's UPDATE moves rows; scattered rows make a key walk dearer).
            cursor.execute("CLUSTER ip_assets USING ip_assets_pkey")
        cursor.execute("VACUUM ANALYZE ip_assets")
        cursor.execute("CHECKPOINT")


def reset(scenario: str) -> None:
    from django.db import connection

    from yesgoddess.search import services

    with connection.cursor() as cursor:
        cursor.execute("UPDATE ip_assets SET search_vector = NULL WHERE search_vector IS NOT NULL")
    if scenario == "warm":
        services.rebuild(["asset"])
    settle(cluster=True)


def baseline() -> float:
    from django.db import connection

    from yesgoddess.search.registry import SEARCHABLE

    sql = f"UPDATE ip_assets AS t SET search_vector = {SEARCHABLE['asset'].vector_sql()}"
    began = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(sql)
    return time.perf_counter() - began


def ours() -> tuple[float, object]:
    from yesgoddess.search import services

    began = time.perf_counter()
    report = services.rebuild(["asset"])
    return time.perf_counter() - began, report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    setup_django(DATABASE_URL=prepare_bench_db(BENCH_DB))
    from django.conf import settings

    ensure_assets(options.assets)
    print(
        f"search rebuild: {options.assets} assets, median of {options.rounds} rounds, "
        f"batches aimed at {settings.SEARCH_REBUILD_BATCH_MS} ms"
    )
    print(f"{'scenario':8} {'one UPDATE':>11} {'rebuild':>8} {'ratio':>6} {'statements':>11} {'longest':>8}")
    for scenario in ("cold", "warm"):
        base, mine, longest, statements = [], [], [], []
        for round_ in range(options.rounds):
            runs = [("base", baseline), ("ours", ours)]
            for name, run in runs if round_ % 2 == 0 else reversed(runs):
                reset(scenario)
                if name == "base":
                    base.append(run())
                else:
                    seconds, report = run()
                    mine.append(seconds)
                    longest.append(report.longest_statement_s)
                    statements.append(report.statements)
        print(
            f"{scenario:8} {median(base):10.2f}s {median(mine):7.2f}s {median(mine) / median(base):5.2f}x "
            f"{int(median(statements)):11d} {max(longest) * 1000:6.0f}ms"
        )
    print("goal: rebuild <= 1.3x one UPDATE (cold), every batch statement < 1 s")


if __name__ == "__main__":
    main()
