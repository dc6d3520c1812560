"""Full-text search over every type in the registry: one SQL statement per request.

The query text goes through `websearch_to_tsquery` (quotes, `or`, `-word` work as on a
web search engine, and it never raises on user input). Matches use the GIN index of
each table; ranks are `ts_rank_cd` with the registry's weights, across types; only the
requested page is highlighted (`ts_headline` is the costly part, so it runs on at most
`page_size` rows). Soft-deleted rows are never found. Staff see every live row; other
users see public rows (approved/published assets, approved creators, verified brands,
active projects, published posts) and their own rows in any status.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection

from .registry import CONFIG, RANK_WEIGHTS, SEARCHABLE, SearchSpec

MAX_PAGE_SIZE = 50
MAX_PAGE = 100
# Private-use characters mark the highlighted words in ts_headline's output; the text is
# HTML-escaped afterwards and they become <mark> tags, so stored HTML never gets through.
START, STOP = "\ue000", "\ue001"
HEADLINE_OPTIONS = (
    f'StartSel="{START}", StopSel="{STOP}", MaxWords=30, MinWords=12, ShortWord=3, '
    'MaxFragments=2, FragmentDelimiter=" … "'
)


@dataclass(frozen=True)
class Hit:
    type: str
    id: int
    title: str
    snippet: str
    rank: float
    url: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "id": self.id,
            "title": self.title,
            "snippet": self.snippet,
            "rank": self.rank,
            "url": self.url,
        }


@dataclass(frozen=True)
class SearchPage:
    results: list[Hit]
    has_more: bool


def _tsquery() -> str:
    return f"websearch_to_tsquery('{CONFIG}', %(q)s)"


def _matches_sql(spec: SearchSpec, staff: bool) -> str:
    visible = "" if staff else f" AND (({spec.public}) OR ({spec.owner}))"
    return (
        f"SELECT '{spec.key}'::text AS type, t.id, "
        f"ts_rank_cd('{RANK_WEIGHTS}', t.search_vector, {_tsquery()}) AS rank "
        f"FROM {spec.table} t WHERE t.search_vector @@ {_tsquery()} AND t.{spec.deleted} IS NULL{visible}"
    )


def _details_sql(spec: SearchSpec) -> str:
    return (
        f"SELECT t.{spec.title}::text AS title, "
        f"ts_headline('{CONFIG}', {spec.snippet_sql()}, {_tsquery()}, %(headline)s) AS snippet, "
        f"t.{spec.url_key}::text AS url_key "
        f"FROM {spec.table} t WHERE p.type = '{spec.key}' AND t.id = p.id"
    )


def search_sql(specs: Sequence[SearchSpec], staff: bool) -> str:
    matches = "\nUNION ALL\n".join(_matches_sql(spec, staff) for spec in specs)
    details = "\nUNION ALL\n".join(_details_sql(spec) for spec in specs)
    return f"""
WITH page AS (
  SELECT type, id, rank FROM (
{matches}
  ) hits ORDER BY rank DESC, type, id LIMIT %(limit)s OFFSET %(offset)s
)
SELECT p.type, p.id, p.rank, d.title, d.snippet, d.url_key
FROM page p CROSS JOIN LATERAL (
{details}
) d
ORDER BY p.rank DESC, p.type, p.id
"""


def _snippet_html(text: str | None) -> str:
    return html.escape(text or "").replace(START, "<mark>").replace(STOP, "</mark>")


def has_terms(q: str) -> bool:
    """False when the query has no searchable word (only stop words or punctuation)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT numnode({_tsquery()})", {"q": q})
        return bool(cursor.fetchone()[0])


def search(q: str, *, user: Any, types: Sequence[str] | None = None, page: int = 1, page_size: int = 20) -> SearchPage:
    """Page `page` (from 1) of the hits for `q` that `user` may see, best first."""
    specs = [SEARCHABLE[t] for t in types] if types else list(SEARCHABLE.values())
    if not has_terms(q):
        return SearchPage(results=[], has_more=False)
    params = {
        "q": q,
        "user": user.pk,
        "headline": HEADLINE_OPTIONS,
        "limit": page_size + 1,
        "offset": (page - 1) * page_size,
    }
    with connection.cursor() as cursor:
        cursor.execute(search_sql(specs, staff=bool(user.is_staff)), params)
        rows = cursor.fetchall()
    results = [
        Hit(
            type=object_type,
            id=pk,
            title=title or "",
            snippet=_snippet_html(snippet),
            rank=round(float(rank), 6),
            url=settings.APP_URL + SEARCHABLE[object_type].url.format(key=url_key),
        )
        for object_type, pk, rank, title, snippet, url_key in rows[:page_size]
    ]
    return SearchPage(results=results, has_more=len(rows) > page_size)
