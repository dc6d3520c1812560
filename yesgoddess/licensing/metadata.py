"""Atomic merges into `License.metadata` (spec B §6.4: jobs used to lose each other's keys).

The merge happens inside PostgreSQL (`metadata || patch`), so two jobs writing different
top-level keys of one license at the same time both keep their key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection


def merge_metadata(patches: Mapping[int, Mapping[str, Any]]) -> int:
    """Merge each patch's top-level keys into its license's metadata; one statement."""
    if not patches:
        return 0
    ids = list(patches)
    documents = [json.dumps(patches[pk], cls=DjangoJSONEncoder) for pk in ids]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE licenses AS l
            SET metadata = COALESCE(l.metadata, '{}'::jsonb) || p.patch, updated_at = now()
            FROM unnest(%s::bigint[], %s::jsonb[]) AS p(id, patch)
            WHERE l.id = p.id
            """,
            [ids, documents],
        )
        return cursor.rowcount
