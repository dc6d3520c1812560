"""Search: a stored tsvector column with a GIN index on creators (yesgoddess/search)."""

from django.db import migrations

from yesgoddess.search.migration_ops import search_vector_operations

# The registry's expression when this migration was written (alias t); the flush and the
# weekly rebuild write the current one (yesgoddess/search/registry.py).
PARTS = [
    "setweight(to_tsvector('yg_english', coalesce(t.display_name, '')), 'A')",
    "setweight(jsonb_to_tsvector('yg_english', coalesce(t.specialties, '[]'::jsonb), '[\"string\"]'), 'C')",
]
VECTOR = f"CASE WHEN t.deleted_at IS NULL THEN {' || '.join(PARTS)} END"


class Migration(migrations.Migration):
    atomic = False  # the GIN index is built CONCURRENTLY and the backfill commits per batch

    dependencies = [
        ("creators", "0003_jobs_fields"),
        ("search", "0001_initial"),
    ]

    operations = search_vector_operations("creators", VECTOR)
