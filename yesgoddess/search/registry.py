"""What is searchable: one `SearchSpec` per type, and the SQL it implies.

Each searchable table has a stored `search_vector tsvector` column with a GIN index
(added by a migration of the model's app through `yesgoddess.search.migration_ops`).
The spec below is the one source of the vector expression (used by the on-change flush,
the per-item job and the weekly rebuild), of what a searcher may see, and of how a hit
is shown. Adding a searchable model is one entry in `SEARCHABLE` (plus the migration
that adds its column, two lines with `search_vector_operations`).

Weights follow spec C §2.8: A = title/name, B = description/bio, C = tags and other
secondary text. Rank weights make A 4x and B 2x a C match, the blog's "4 x title,
2 x content, 1 x excerpt" rule (posts put content in B and the excerpt in C).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from django.apps import apps
from django.db.models import Model

# The text search configuration made by search migration 0001: english stemming, with
# the unaccent dictionary in front of it when the extension could be created.
CONFIG = "yg_english"
# ts_rank_cd weights, in the order {D, C, B, A}.
RANK_WEIGHTS = "{0.1, 0.25, 0.5, 1.0}"


@dataclass(frozen=True)
class Text:
    """A text column, NULL read as empty."""

    column: str
    weight: str

    def sql(self) -> str:
        return f"setweight(to_tsvector('{CONFIG}', coalesce(t.{self.column}, '')), '{self.weight}')"


@dataclass(frozen=True)
class JsonStrings:
    """Every string inside a JSON value (a list of tags, say); `path` is one key of it."""

    column: str
    weight: str
    path: str | None = None

    def sql(self) -> str:
        value = f"t.{self.column} -> '{self.path}'" if self.path else f"t.{self.column}"
        return (
            f"setweight(jsonb_to_tsvector('{CONFIG}', coalesce({value}, '[]'::jsonb), '[\"string\"]'), '{self.weight}')"
        )


@dataclass(frozen=True)
class SearchSpec:
    key: str  # the `type` of the API and of pending ids ("asset:12")
    model_label: str  # "app_label.ModelName"
    fields: tuple[Text | JsonStrings, ...]
    title: str  # column shown as the result's title
    snippet: tuple[str, ...]  # columns joined into the text a highlight is cut from
    url: str  # result link: APP_URL + this, formatted with {key}
    public: str  # SQL on `t`: rows any authenticated searcher may see
    owner: str  # SQL on `t` with %(user)s: the searcher's own rows (seen in any status)
    url_key: str = "id"  # column that fills {key} in `url`
    deleted: str = "deleted_at"  # soft-delete column: set -> never found, vector cleared

    @cached_property
    def model(self) -> type[Model]:
        return apps.get_model(self.model_label)

    @property
    def table(self) -> str:
        return self.model._meta.db_table

    @cached_property
    def watched_fields(self) -> frozenset[str]:
        """Model fields whose change alters the vector (a save touching none is ignored)."""
        return frozenset({field.column for field in self.fields} | {self.deleted})

    def vector_sql(self) -> str:
        """The row's vector, NULL for a soft-deleted row (alias `t`)."""
        parts = " || ".join(field.sql() for field in self.fields)
        return f"CASE WHEN t.{self.deleted} IS NULL THEN {parts} END"

    def snippet_sql(self) -> str:
        return "concat_ws(' — ', " + ", ".join(f"t.{column}" for column in self.snippet) + ")"


_SPECS = (
    SearchSpec(
        key="asset",
        model_label="assets.IpAsset",
        fields=(Text("title", "A"), Text("description", "B"), JsonStrings("metadata", "C", path="tags")),
        title="title",
        snippet=("title", "description"),
        url="/assets/{key}",
        public="t.status IN ('APPROVED', 'PUBLISHED')",
        owner="t.created_by_id = %(user)s",
    ),
    SearchSpec(
        key="creator",
        model_label="creators.Creator",
        # The creator profile has no bio column (yet): its name and specialties are the text.
        fields=(Text("display_name", "A"), JsonStrings("specialties", "C")),
        title="display_name",
        snippet=("display_name",),
        url="/creators/{key}",
        public="t.verification_status = 'approved'",
        owner="t.user_id = %(user)s",
    ),
    SearchSpec(
        key="brand",
        model_label="brands.Brand",
        fields=(Text("name", "A"), Text("description", "B"), Text("industry", "C")),
        title="name",
        snippet=("name", "description"),
        url="/brands/{key}",
        public="t.verification_status = 'verified'",
        owner="t.user_id = %(user)s",
    ),
    SearchSpec(
        key="project",
        model_label="projects.Project",
        fields=(Text("name", "A"), Text("description", "B")),
        title="name",
        snippet=("name", "description"),
        url="/projects/{key}",
        public="t.status IN ('ACTIVE', 'IN_PROGRESS', 'COMPLETED')",
        owner="t.brand_id IN (SELECT b.id FROM brands b WHERE b.user_id = %(user)s)",
    ),
    SearchSpec(
        key="post",
        model_label="blog.Post",
        fields=(Text("title", "A"), Text("content", "B"), Text("excerpt", "C"), JsonStrings("tags", "D")),
        title="title",
        snippet=("title", "excerpt", "content"),
        url="/blog/{key}",
        url_key="slug",
        public="t.status = 'PUBLISHED'",
        owner="t.author_id = %(user)s",
    ),
)

SEARCHABLE: dict[str, SearchSpec] = {spec.key: spec for spec in _SPECS}


class UnknownSearchType(LookupError):
    def __init__(self, key: str) -> None:
        super().__init__(f"Unknown search type {key!r}; one of {', '.join(SEARCHABLE)}.")
        self.key = key


def get_search_spec(key: str) -> SearchSpec:
    try:
        return SEARCHABLE[key]
    except KeyError:
        raise UnknownSearchType(key) from None


def spec_for_model(model: type[Model]) -> SearchSpec | None:
    for spec in SEARCHABLE.values():
        if spec.model is model:
            return spec
    return None
