"""Recording analytics events posted to `POST /api/events/` (spec C §2.5.1 trigger, issue 11).

`parse_events` validates a request body (one event, or `{"events": [...]}` with up to
MAX_BATCH of them) into NewEvent rows (not stored yet); `record_events` inserts them in one
statement, records the session context the enrichment reads (`session:<id>` in Redis,
written by the first event of a session, kept alive by the next ones) and asks for one
flush (`enrichment.request_flush`), never a job per event.

Rules:
- event_type (<= 100 characters) and source (<= 50) are required strings.
- occurred_at: ISO 8601 (no offset = UTC), default now. Not in the future (a client
  clock up to CLOCK_SKEW ahead is read as now) and at most MAX_LATENESS old: the daily
  roll-up of a day runs at 02:00 the next day, so every accepted event is counted by it
  (older events are imported by operators and re-aggregated with `backfill_metrics`).
- project_id, ip_asset_id, license_id, post_id, brand_id, creator_id: optional ids of
  rows the caller may see (`access`: theirs, or public; any for a trusted source), 400
  otherwise, with the same answer whether the row does not exist or is not theirs.
- props: optional JSON object (<= MAX_PROPS_BYTES once encoded). `userAgent` (string)
  is parsed by the enrichment; without it the request's User-Agent header is used.
  `referrer`, `landingPage` and `utmSource`/`utmMedium`/`utmCampaign`/`utmTerm`/
  `utmContent` of a session's first event become its session context.
- session_id: optional string (<= 128).
- The actor is the authenticated user. A trusted source (staff, or a service token: a
  server-side collector) may set actor_type, actor_id and user_id for the visitor
  instead, and is the only one whose props may carry revenueCents (money that flows
  into license ROI and the roll-ups): from anyone else such an event is refused (403).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from redis.exceptions import RedisError

from .access import REVENUE_PROP, Actor, visible_ids
from .enrichment import SESSION_KEY, SESSION_TTL, UTM_KEYS, request_flush

MAX_BATCH = 500
MAX_PROPS_BYTES = 16 * 1024
MAX_LATENESS = timedelta(hours=1)
CLOCK_SKEW = timedelta(minutes=5)
FIELDS = {
    "event_type",
    "source",
    "occurred_at",
    "project_id",
    "ip_asset_id",
    "license_id",
    "post_id",
    "brand_id",
    "creator_id",
    "props",
    "session_id",
    "actor_type",
    "actor_id",
    "user_id",
}
STAFF_ONLY = {"actor_type", "actor_id", "user_id"}
REFERENCES = ("project_id", "ip_asset_id", "license_id", "post_id", "brand_id", "creator_id")
SESSION_PROPS = ("referrer", "landingPage", *UTM_KEYS)

ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")  # \u0000 not preceded by an escaped backslash

log = logging.getLogger(__name__)


class EventInputError(ValueError):
    """An event the API refuses (`status`, 400 unless said otherwise, with the message)."""

    status = 400


class EventForbidden(EventInputError):
    """An event only a trusted source may send (403)."""

    status = 403


def _reference_models() -> dict[str, Any]:
    from yesgoddess.assets.models import IpAsset
    from yesgoddess.blog.models import Post
    from yesgoddess.brands.models import Brand
    from yesgoddess.creators.models import Creator
    from yesgoddess.licensing.models import License
    from yesgoddess.projects.models import Project

    return {
        "project_id": Project,
        "ip_asset_id": IpAsset,
        "license_id": License,
        "post_id": Post,
        "brand_id": Brand,
        "creator_id": Creator,
    }


def _string(data: dict[str, Any], key: str, limit: int, *, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise EventInputError(f"{key} is required.")
        return None
    stripped = value.strip() if isinstance(value, str) else ""
    if not stripped:
        raise EventInputError(f"{key} must be a non-empty string.")
    if len(value) > limit:
        raise EventInputError(f"{key} is longer than {limit} characters.")
    if "\x00" in value:
        raise EventInputError(f"{key} contains a NUL character.")
    if not value.isascii():  # only non-ASCII text can hold a lone surrogate
        try:
            value.encode()
        except UnicodeEncodeError:
            raise EventInputError(f"{key} is not valid Unicode.") from None
    return stripped


def _id(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise EventInputError(f"{key} must be a positive integer id.")
    return value


def _occurred_at(data: dict[str, Any], now: datetime) -> datetime:
    raw = data.get("occurred_at")
    if raw is None:
        return now
    if not isinstance(raw, str):
        raise EventInputError("occurred_at must be an ISO 8601 date-time string.")
    try:
        moment = parse_datetime(raw)
    except ValueError:
        moment = None
    if moment is None:
        raise EventInputError("occurred_at must be an ISO 8601 date-time string.")
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=UTC)
    if moment > now + CLOCK_SKEW:
        raise EventInputError("occurred_at is in the future.")
    if moment < now - MAX_LATENESS:
        raise EventInputError(
            f"occurred_at is more than {int(MAX_LATENESS.total_seconds() // 60)} minutes ago; "
            "late events are imported by operators."
        )
    return min(moment, now)


def _props(data: dict[str, Any], user_agent_header: str) -> tuple[dict[str, Any], str]:
    """The event's props and their JSON text (encoded once: the size and NUL checks read
    it, and the INSERT sends it as it is)."""
    props = data.get("props", {})
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise EventInputError("props must be a JSON object.")
    try:
        text = _encode_props(props)
        encoded = text.encode()
    except ValueError:  # NaN or Infinity (JSON has neither), or a lone surrogate
        raise EventInputError("props holds a value JSON cannot store (NaN, Infinity or invalid Unicode).") from None
    if len(encoded) > MAX_PROPS_BYTES:
        raise EventInputError(f"props is larger than {MAX_PROPS_BYTES} bytes.")
    # PostgreSQL's jsonb cannot hold a NUL; the substring test spares nearly every event
    # the regular expression (its look-behind is tried at every position).
    if b"\\u0000" in encoded and ESCAPED_NUL.search(encoded):
        raise EventInputError("props contains a NUL character.")
    user_agent = props.get("userAgent")
    if user_agent is not None and not isinstance(user_agent, str):
        raise EventInputError("props.userAgent must be a string.")
    if user_agent is None and user_agent_header:
        user_agent = user_agent_header[:1000].replace("\x00", "")
        props = {**props, "userAgent": user_agent}
        # The key goes last, as in the dict; the header is ASCII or Latin-1 text.
        text = text[:-1] + ("," if len(text) > 2 else "") + '"userAgent":' + _encode_props(user_agent) + "}"
    return props, text


# One encoder for every event: json.dumps with options builds a new one per call.
_encode_props = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_encode = json.JSONEncoder(separators=(",", ":")).encode


@dataclass(slots=True)
class NewEvent:
    """A validated event, not stored yet: its INSERT values (`columns`, JSON-ready: every
    column of INSERT_COLUMNS but props_json) and its props with their JSON text. Plain
    values, not Event instances: building a model instance cost more than validating."""

    columns: dict[str, Any]
    props: dict[str, Any]
    props_text: str
    occurred_at: datetime
    session_id: str | None
    id: int | None = None


def parse_event(data: Any, *, actor: Actor, now: datetime, user_agent: str = "") -> tuple[NewEvent, dict[str, int]]:
    """One validated event (pending enrichment) and the ids it references, or EventInputError."""
    if not isinstance(data, dict):
        raise EventInputError("an event must be a JSON object.")
    keys = data.keys()
    if not keys <= FIELDS:
        raise EventInputError(f"unknown field(s): {', '.join(sorted(keys - FIELDS))}.")
    staff_fields = STAFF_ONLY & keys
    if staff_fields and not actor.trusted:
        raise EventInputError(f"only staff or a service token may set {', '.join(sorted(staff_fields))}.")
    references = {key: value for key in REFERENCES if (value := _id(data, key)) is not None}
    event_type = _string(data, "event_type", 100, required=True)
    source = _string(data, "source", 50, required=True)
    occurred_at = _occurred_at(data, now)
    session_id = _string(data, "session_id", 128)
    columns: dict[str, Any] = {
        "event_type": event_type,
        "source": source,
        "occurred_at": occurred_at.isoformat(),
        "session_id": session_id,
        "actor_type": "user",
        "actor_id": str(actor.user_id),
        "user_id": actor.user_id,
        **references,
    }
    props, props_text = _props(data, user_agent)
    if REVENUE_PROP in props and not actor.trusted:
        raise EventForbidden(f"props.{REVENUE_PROP} is taken only from staff or a service token (server-side).")
    if staff_fields:
        columns["actor_type"] = _string(data, "actor_type", 50)
        columns["actor_id"] = _string(data, "actor_id", 64)
        columns["user_id"] = _id(data, "user_id")
    return NewEvent(columns, props, props_text, occurred_at, session_id), references


def parse_events(body: dict[str, Any], *, actor: Actor, user_agent: str = "") -> tuple[list[NewEvent], bool]:
    """The events of a request body and whether it was a batch; EventInputError names
    the offending event of a batch. Referenced ids are checked with one query per kind."""
    now = timezone.now()
    batch = "events" in body
    if batch:
        if set(body) != {"events"}:
            raise EventInputError('a batch is {"events": [...]} and nothing else.')
        items = body["events"]
        if not isinstance(items, list) or not items:
            raise EventInputError("events must be a non-empty list.")
        if len(items) > MAX_BATCH:
            raise EventInputError(f"at most {MAX_BATCH} events per request.")
    else:
        items = [body]
    events: list[NewEvent] = []
    references: list[dict[str, int]] = []
    for index, item in enumerate(items):
        try:
            event, refs = parse_event(item, actor=actor, now=now, user_agent=user_agent)
        except EventInputError as exc:
            raise type(exc)(f"events[{index}]: {exc}" if batch else str(exc)) from None
        events.append(event)
        references.append(refs)
    models = _reference_models()
    for key in REFERENCES:
        ids = {refs[key] for refs in references if key in refs}
        if not ids:
            continue
        missing = ids - visible_ids(models[key], key, ids, actor)
        if missing:  # not there, or not the caller's to see: the same answer
            index = next(i for i, refs in enumerate(references) if refs.get(key) in missing)
            message = f"{key} {references[index][key]} does not exist or is not visible to you."
            raise EventInputError(f"events[{index}]: {message}" if batch else message)
    return events, batch


def session_context(event: NewEvent) -> dict[str, Any]:
    props = event.props
    context: dict[str, Any] = {"sessionStartTime": event.occurred_at.astimezone(UTC).isoformat()}
    for key in SESSION_PROPS:
        value = props.get(key)
        if isinstance(value, str) and value.strip():
            context[key] = value.strip()[:4000]
    return context


# Sessions are kept in one or two script calls per request, whatever its size: hundreds
# of SET/EXPIRE commands cost the web process more to encode than to send. The first call
# renews every session's lifetime and names those without a context; only for those is
# a context built and written (most events belong to a session that already has one).
RENEW_SESSIONS = """
local missing = {}
for i, key in ipairs(KEYS) do
  if redis.call('EXPIRE', key, ARGV[1]) == 0 then missing[#missing + 1] = i end
end
return missing
"""
# KEYS: the new sessions; ARGV: the TTL, then a context per key. NX: a context written
# meanwhile by another request stays (the first writer wins).
START_SESSIONS = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i + 1], 'NX', 'EX', ARGV[1])
end
return #KEYS
"""


def remember_sessions(events: list[NewEvent]) -> None:
    """The first event of a session writes its context (start, referrer, campaign);
    every event keeps it alive for SESSION_TTL seconds."""
    from yesgoddess.core.redis import redis_connection

    first: dict[str, NewEvent] = {}
    for event in events:
        if event.session_id and (
            event.session_id not in first or event.occurred_at < first[event.session_id].occurred_at
        ):
            first[event.session_id] = event
    if not first:
        return
    client = redis_connection()
    keys = [SESSION_KEY.format(session_id) for session_id in first]
    missing = _script(client, RENEW_SESSIONS)(keys=keys, args=[SESSION_TTL])
    if missing:
        starts = list(first.values())
        contexts = [_encode(session_context(starts[i - 1])) for i in missing]
        _script(client, START_SESSIONS)(keys=[keys[i - 1] for i in missing], args=[SESSION_TTL, *contexts])


@lru_cache(maxsize=4)
def _script(client: Any, source: str) -> Any:
    return client.register_script(source)


def record_events(events: list[NewEvent]) -> list[int]:
    """Insert the events (one statement) and ask for one enrichment flush after commit.

    The session context is written first, so the flush always finds it. If Redis cannot
    be reached the events are still recorded (enriched later, without session data)."""
    try:
        remember_sessions(events)
    except RedisError:
        log.warning("analytics: session context of %s event(s) not stored (Redis unreachable)", len(events))
    with transaction.atomic():
        insert_events(events)
        request_flush()
    return [event.id for event in events]


INSERT_COLUMNS = (
    ("occurred_at", "timestamptz"),
    ("source", "text"),
    ("event_type", "text"),
    ("actor_type", "text"),
    ("actor_id", "text"),
    ("project_id", "bigint"),
    ("ip_asset_id", "bigint"),
    ("license_id", "bigint"),
    ("post_id", "bigint"),
    ("user_id", "bigint"),
    ("brand_id", "bigint"),
    ("creator_id", "bigint"),
    ("props_json", "jsonb"),
    ("session_id", "text"),
)
# created_at and enrich_pending are the same for every row of a request; the ordinality
# keeps the returned ids in the order of the events.
INSERT_EVENTS = f"""
INSERT INTO events ({", ".join(name for name, _ in INSERT_COLUMNS)}, created_at, enrich_pending)
SELECT {", ".join(f"r.{name}" for name, _ in INSERT_COLUMNS)}, %s, true
FROM ROWS FROM (jsonb_to_recordset(%s::jsonb) AS ({", ".join(f"{name} {kind}" for name, kind in INSERT_COLUMNS)}))
  WITH ORDINALITY AS r({", ".join(name for name, _ in INSERT_COLUMNS)}, i)
ORDER BY r.i
RETURNING id
"""


def insert_events(events: list[NewEvent]) -> None:
    """Insert `events` in one statement and set their ids. The rows travel as one JSON
    document, each with its props' text spliced in as it was encoded when validated: at
    hundreds of events a request, Django's bulk_create spent more time preparing values
    than PostgreSQL spent inserting them."""
    rows = ",".join(f'{_encode(event.columns)[:-1]},"props_json":{event.props_text}}}' for event in events)
    with connection.cursor() as cursor:
        cursor.execute(INSERT_EVENTS, [timezone.now(), f"[{rows}]"])
        for event, (pk,) in zip(events, cursor.fetchall(), strict=True):
            event.id = pk
