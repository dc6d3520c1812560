"""Search query latency: `GET /api/search` over 200,000 assets, 100 queries, p50/p95.

The data of search_rebuild.py (same database; vectors rebuilt first if any is missing).
100 queries drawn from the vocabulary across its frequency range: 40 single words,
30 two-word AND queries, 20 quoted two-word phrases, 10 `a or b -c` queries. Each query
is timed twice: the search service as a staff user (every live row visible), and a
member (public rows and their own). Then the whole request through Django's test
client (authentication, JSON). Also printed: EXPLAIN ANALYZE of a typical query,
showing the GIN index (Bitmap Index Scan on ip_assets_search_vector_gin).
Usage: python bench/search_query.py [--assets 200000] [--queries 100]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from _common import prepare_bench_db, setup_django
from search_rebuild import BENCH_DB, ensure_assets, settle, vocabulary


def make_queries(n: int) -> list[str]:
    rng = random.Random(11)
    words = vocabulary()

    def word() -> str:  # ranks 20 .. 5000, skewed towards the frequent end
        return words[20 + int((len(words) - 21) * rng.random() ** 2)]

    queries = [word() for _ in range(n * 40 // 100)]
    queries += [f"{word()} {word()}" for _ in range(n * 30 // 100)]
    queries += [f'"{word()} {word()}"' for _ in range(n * 20 // 100)]
    queries += [f"{word()} or {word()} -{word()}" for _ in range(n - len(queries))]
    rng.shuffle(queries)
    return queries


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def timed(fn, queries: list[str]) -> tuple[list[float], list[int]]:
    latencies, hits = [], []
    for q in queries:
        began = time.perf_counter()
        hits.append(fn(q))
        latencies.append((time.perf_counter() - began) * 1000)
    return latencies, hits


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=100)
    options = parser.parse_args()
    setup_django(DATABASE_URL=prepare_bench_db(BENCH_DB))
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from yesgoddess.search import services
    from yesgoddess.search.query import HEADLINE_OPTIONS, search, search_sql
    from yesgoddess.search.registry import SEARCHABLE

    owner_id = ensure_assets(options.assets)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ip_assets WHERE search_vector IS NULL AND deleted_at IS NULL")
        if cursor.fetchone()[0]:
            print("rebuilding vectors ...", flush=True)
            services.rebuild(["asset"])
    settle()
    users = get_user_model()
    staff, _ = users.objects.get_or_create(username="bench-search-staff", defaults={"is_staff": True})
    member = users.objects.get(pk=owner_id)  # owns every bench asset: sees drafts too
    outsider, _ = users.objects.get_or_create(username="bench-search-member")
    queries = make_queries(options.queries)

    def count_matches(q: str) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM ip_assets WHERE search_vector @@ websearch_to_tsquery('yg_english', %s)", [q]
            )
            return cursor.fetchone()[0]

    matches = [count_matches(q) for q in queries]
    timed(lambda q: len(search(q, user=staff, page_size=20).results), queries[:10])  # warm-up
    print(
        f"search over {options.assets} assets, {len(queries)} queries; matching rows per query: "
        f"median {statistics.median(matches):.0f}, p95 {percentile(matches, 95):.0f}, max {max(matches)}"
    )
    print(f"{'who':34} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}")
    setups = {
        "staff, all types": lambda q: len(search(q, user=staff, page_size=20).results),
        "staff, type=asset": lambda q: len(search(q, user=staff, types=["asset"], page_size=20).results),
        "member (public + own rows)": lambda q: len(search(q, user=member, page_size=20).results),
        "member (public rows only)": lambda q: len(search(q, user=outsider, page_size=20).results),
    }
    client = Client()
    client.force_login(staff)
    setups["staff, whole GET /api/search"] = lambda q: len(client.get("/api/search", {"q": q}).json()["results"])
    for name, fn in setups.items():
        latencies, _ = timed(fn, queries)
        print(f"{name:34} {percentile(latencies, 50):7.1f} {percentile(latencies, 95):7.1f} {max(latencies):7.1f}")
    # The plan of a typical (median-frequency) single-word query.
    single = sorted((m, q) for m, q in zip(matches, queries, strict=True) if " " not in q)
    typical = single[len(single) // 2][1]
    params = {"q": typical, "user": staff.pk, "headline": HEADLINE_OPTIONS, "limit": 21, "offset": 0}
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + search_sql([SEARCHABLE["asset"]], staff=True), params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    print(f"\nEXPLAIN ANALYZE, q={typical!r} (type=asset, staff):\n{plan}")
    print("goal: report p50/p95; the GIN index is used (Bitmap Index Scan on ip_assets_search_vector_gin)")


if __name__ == "__main__":
    main()
