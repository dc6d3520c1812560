"""Event enrichment (spec C §2.5.1, defects fixed), batched (issue 11).

A flush takes up to ANALYTICS_ENRICH_BATCH pending events, locked FOR UPDATE SKIP LOCKED
in one transaction, and enriches them with a constant number of queries whatever the
batch size: one SELECT of the events, one of their assets, one of their licenses, one
Redis MGET of their sessions, one upsert of their attribution rows and one UPDATE that
merges the new keys into `props_json` and clears `enrich_pending` for every event of
the batch. The marker is cleared by the statement that writes the enrichment, so a flush
that dies half-way (a killed worker) leaves its whole batch pending for the next flush,
and an enriched event is never met again.

Merging never overwrites: the new keys are `enrichment || props_json`, so a key the event
already has (from the client, or from an earlier run) stays as it was. Running the
enrichment of an event twice therefore changes nothing (the attribution upsert writes
the same values again). The spec's defect (each step overwrote the previous step's
keys) is gone: all keys are computed first and merged once.

A poison event (props not an object, a user agent that is not a string, ...) is marked
with `enrichment_error` and leaves the pending set; the rest of the batch is enriched.
If the batch's writes fail in the database, each event is written on its own (in a
savepoint) so that one bad row cannot hold the others back.

New events ask for a flush with `request_flush()` (after their transaction commits):
a Redis marker (`SET NX`, ANALYTICS_ENRICH_MAX_WAIT seconds) makes sure one flush job is
queued, not one per event. A flush job deletes the marker when it starts, so events
arriving while it runs queue the next flush; a flush that finds a full batch queues the
next one before it starts working, so a second worker can take the following batch.

The jobs (spec C §2.5, issue 11), one call each:
- `analytics-jobs.enrich-events` (`flush_pending`): one flush of up to
  ANALYTICS_ENRICH_BATCH pending events; queued by the events API (one per burst, never
  one per event) and re-queued while events remain.
- `analytics-jobs.enrich-sweep` (every 5 minutes, `sweep`): a safety net that queues a
  flush when events are pending and none is queued (a flush lost with Redis, say).
- `analytics-jobs.enrich-event` (`enrich_event`): one event by id, whatever its state
  (operators, tests).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from yesgoddess.assets.models import IpAsset
from yesgoddess.core.errors import InvalidInput
from yesgoddess.licensing.models import License

log = logging.getLogger(__name__)

FLUSH_JOB = "analytics-jobs.enrich-events"
FLUSH_MARKER = "analytics:enrich:flush-queued"
SESSION_KEY = "session:{}"
SESSION_TTL = 3600  # seconds (spec C §4.10)
UTM_KEYS = ("utmSource", "utmMedium", "utmCampaign", "utmTerm", "utmContent")
MAX_USER_AGENT = 1000  # characters parsed (longer ones are cut)


class PoisonEvent(ValueError):
    """An event that can never be enriched; the message is stored on the event."""


# --- asking for a flush ---------------------------------------------------------------


def ensure_flush_queued() -> bool:
    """Queue one flush job unless one is already queued; True if this call queued it."""
    from jobs.api import enqueue
    from yesgoddess.core.redis import redis_connection

    conn = redis_connection()
    if not conn.set(FLUSH_MARKER, "1", nx=True, ex=settings.ANALYTICS_ENRICH_MAX_WAIT):
        return False
    try:
        enqueue(FLUSH_JOB)
    except BaseException:
        conn.delete(FLUSH_MARKER)
        raise
    return True


def request_flush() -> None:
    """Make sure a flush job runs after the current transaction commits (at once outside
    one). A failure to reach Redis is logged, never raised: the events are recorded, and
    the next event or the enrichment sweep (every few minutes) queues the flush."""
    transaction.on_commit(ensure_flush_queued, robust=True)


def release_flush_marker() -> None:
    """Called by a flush job when it starts: from now on a new event queues the next flush."""
    from yesgoddess.core.redis import redis_connection

    redis_connection().delete(FLUSH_MARKER)


# --- user agents ----------------------------------------------------------------------

_TV = re.compile(r"smart-?tv|hbbtv|appletv|googletv|crkey|roku|bravia|netcast|web0s|aft[a-z]\b|\btv\b", re.I)
_CONSOLE = re.compile(r"playstation|xbox|nintendo", re.I)
_WEARABLE = re.compile(r"watch os|watchos|wear ?os|\bwatch\b", re.I)
_TABLET = re.compile(r"ipad|tablet|kindle|silk/|playbook|\btab\b", re.I)
_MOBILE = re.compile(r"mobi|iphone|ipod|windows phone|blackberry|opera mini|\bphone\b", re.I)


def _version(part: Any) -> str | None:
    numbers = [n for n in (part.major, part.minor, part.patch) if n]
    return ".".join(numbers) or None


def device_type(user_agent: str, device_family: str | None, os_family: str | None) -> str:
    """The spec's normalised device type: tv, console, wearable, tablet, mobile, desktop."""
    if _TV.search(user_agent):
        return "tv"
    if _CONSOLE.search(user_agent):
        return "console"
    if _WEARABLE.search(user_agent):
        return "wearable"
    if _TABLET.search(user_agent) or (device_family or "").lower().endswith("tablet"):
        return "tablet"
    if _MOBILE.search(user_agent):
        return "mobile"
    if os_family == "Android":  # Android without "Mobile" in the string is a tablet
        return "tablet"
    return "desktop"


@lru_cache(maxsize=4096)
def parse_user_agent(user_agent: str) -> dict[str, dict[str, str | None]]:
    """{device: {type, brand, model}, browser: {name, version}, os: {name, version}}
    (ua-parser with the native resolver when ua-parser-rs is installed; cached)."""
    import ua_parser

    result = ua_parser.parse(user_agent[:MAX_USER_AGENT])
    agent, os, device = result.user_agent, result.os, result.device
    device_family = device.family if device and device.family != "Other" else None
    os_family = os.family if os and os.family != "Other" else None
    return {
        "device": {
            "type": device_type(user_agent, device_family, os_family),
            "brand": device.brand if device else None,
            "model": device.model if device else None,
        },
        "browser": {
            "name": agent.family if agent and agent.family != "Other" else None,
            "version": _version(agent) if agent else None,
        },
        "os": {"name": os_family, "version": _version(os) if os else None},
    }


# --- one event --------------------------------------------------------------------------

# What a flush reads of an event. Not its props: the enrichment needs only their user agent,
# and their whole text only when it refuses them (not an object, a userAgent that is not a
# string), to say why. The time comes as integer microseconds since the epoch.
EVENT_COLUMNS = """id, (extract(epoch FROM occurred_at) * 1000000)::bigint, ip_asset_id, license_id, session_id,
  props_json->>'userAgent',
  CASE WHEN jsonb_typeof(props_json) <> 'object' OR jsonb_typeof(props_json->'userAgent') NOT IN ('string', 'null')
    THEN props_json END"""


@dataclass(slots=True)
class EventRow:
    id: int
    occurred_us: int  # microseconds since the epoch
    ip_asset_id: int | None
    license_id: int | None
    session_id: str | None
    user_agent: str | None
    refused_props: str | None = None  # the props' JSON text, when the enrichment refuses them


ATTRIBUTION_COLUMNS = (
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "referrer",
    "landing_page",
    "device_type",
    "browser",
    "os",
)
ATTRIBUTION_LIMITS = {"device_type": 50, "browser": 100, "os": 100, "referrer": 4000, "landing_page": 4000}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _text(value: Any, limit: int = 255) -> str | None:
    """A clean string for a text column (or None): no NUL (PostgreSQL refuses it)."""
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).replace("\x00", "").strip()
    return text[:limit] or None


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def _session_start(value: Any) -> datetime | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # epoch milliseconds
        try:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:  # fromisoformat reads what the ingest writes, several times faster
            parsed = datetime.fromisoformat(value)
        except ValueError:
            try:
                parsed = parse_datetime(value)
            except ValueError:
                return None
        if parsed is not None and timezone.is_naive(parsed):
            parsed = parsed.replace(tzinfo=UTC)
        return parsed
    return None


def asset_snapshot(asset: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "id": asset["id"],
        "title": asset["title"],
        "type": asset["type"],
        "status": asset["status"],
        "projectId": asset["project_id"],
        "createdBy": asset["created_by_id"],
        "createdAt": _iso(asset["created_at"]),
        "snapshotAt": _iso(now),
    }


def license_snapshot(license: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "id": license["id"],
        "status": license["status"],
        "type": license["license_type"],
        "startDate": _iso(license["start_date"]),
        "endDate": _iso(license["end_date"]),
        "feeCents": license["fee_cents"],
        "revShareBps": license["rev_share_bps"],
        "brandId": license["brand_id"],
        "projectId": license["project_id"],
        "scope": license["scope_json"],
        "snapshotAt": _iso(now),
    }


# One encoder for every call: json.dumps with options builds a new one each time.
_dumps = json.JSONEncoder(separators=(",", ":"), default=str).encode


def refusal(props_text: str) -> str:
    """Why the enrichment refuses these props (EVENT_COLUMNS sends only such props)."""
    props = json.loads(props_text)
    if not isinstance(props, dict):
        return f"props_json is a JSON {type(props).__name__}, not an object"
    return f"props_json.userAgent is a JSON {type(props.get('userAgent')).__name__}, not a string"


@lru_cache(maxsize=4096)
def user_agent_part(user_agent: str) -> tuple[str, tuple[tuple[str, str | None], ...]]:
    """The JSON members `"device":…,"browser":…,"os":…` of a user agent and its attribution
    values (device_type, browser, os): both the same for every event with that agent."""
    parsed = parse_user_agent(user_agent)
    values = (
        ("device_type", parsed["device"]["type"]),
        ("browser", parsed["browser"]["name"]),
        ("os", parsed["os"]["name"]),
    )
    return _dumps(parsed)[1:-1], values


@dataclass(slots=True, frozen=True)
class SessionPart:
    """What a session brings to each of its events, encoded once (see `session_part`): the
    members `"session":{…},"campaign":{…}` around the event's own duration, and the
    session's attribution values."""

    start_us: int | None
    head: str  # '"session":{"startTime":…,"durationMs":'
    tail: str  # ',"referrer":…},"campaign":{…}'
    attribution: tuple[tuple[str, str | None], ...]

    @classmethod
    def of(cls, context: dict[str, Any]) -> SessionPart:
        start = _session_start(context.get("sessionStartTime"))
        referrer = _text(context.get("referrer"), 4000)
        campaign = {key[3:].lower(): _text(context.get(key)) for key in UTM_KEYS}
        landing_page = _text(context.get("landingPage"), 4000)
        attribution: tuple[tuple[str, str | None], ...] = ()
        # The spec writes attribution only for utm source/medium/campaign; the referrer
        # alone is kept too, or the post metrics could never see a referral.
        if any(campaign[k] for k in ("source", "medium", "campaign")) or referrer or landing_page:
            attribution = (
                *((f"utm_{key}", value) for key, value in campaign.items()),
                ("referrer", referrer),
                ("landing_page", landing_page),
            )
        return cls(
            start_us=None if start is None else (start - EPOCH) // timedelta(microseconds=1),
            head=f'"session":{{"startTime":{_dumps(_iso(start))},"durationMs":',
            tail=f',"referrer":{_dumps(referrer)}}},"campaign":{_dumps(campaign)}',
            attribution=attribution,
        )

    def members(self, occurred_us: int) -> str:
        if self.start_us is None:
            return f"{self.head}null{self.tail}"
        return f"{self.head}{max(0, round((occurred_us - self.start_us) / 1000))}{self.tail}"


class BatchParts:
    """The JSON text of everything the events of one batch share (snapshots, sessions,
    user agents, attribution rows), each encoded once: per event, the enrichment only
    joins pieces of text."""

    def __init__(
        self,
        assets: dict[int, dict[str, Any]],
        licenses: dict[int, dict[str, Any]],
        sessions: dict[str, SessionPart],
    ) -> None:
        self.assets = {pk: f'"asset_snapshot":{_dumps(snapshot)}' for pk, snapshot in assets.items()}
        self.licenses = {pk: f'"license_snapshot":{_dumps(snapshot)}' for pk, snapshot in licenses.items()}
        self.sessions = sessions
        self.attributions: dict[tuple, str | None] = {}

    def session(self, session_id: str | None) -> SessionPart | None:
        return self.sessions.get(session_id) if session_id else None

    def attribution(self, agent: tuple | None, session: SessionPart | None) -> str | None:
        """The attribution columns as JSON members (after `"event_id":N,`), or None when
        the event has nothing to attribute."""
        key = (agent, session and session.attribution)
        if key not in self.attributions:
            values = dict(agent or ())
            values.update(session.attribution if session else ())
            self.attributions[key] = (
                _dumps({c: _text(values.get(c), ATTRIBUTION_LIMITS.get(c, 255)) for c in ATTRIBUTION_COLUMNS})[1:]
                if values
                else None
            )
        return self.attributions[key]


def enrich_one(event: EventRow, parts: BatchParts) -> tuple[str | None, str | None]:
    """The JSON text of the keys to merge into the event's props (or None) and of its
    attribution columns (or None).

    Raises PoisonEvent for data that can never be enriched."""
    if event.refused_props is not None:
        raise PoisonEvent(refusal(event.refused_props))
    members = []
    agent = None
    user_agent = event.user_agent
    if user_agent and user_agent.strip():
        text, agent = user_agent_part(user_agent.replace("\x00", ""))
        members.append(text)
    session = parts.session(event.session_id)
    if session is not None:
        members.append(session.members(event.occurred_us))
    if event.ip_asset_id is not None:
        asset = parts.assets.get(event.ip_asset_id)
        if asset is None:
            log.warning("enrich event %s: asset %s not found", event.id, event.ip_asset_id)
        else:
            members.append(asset)
    if event.license_id is not None:
        license = parts.licenses.get(event.license_id)
        if license is None:
            log.warning("enrich event %s: license %s not found", event.id, event.license_id)
        else:
            members.append(license)
    extra = "{" + ",".join(members) + "}" if members else None
    return extra, parts.attribution(agent, session)


# --- a batch ----------------------------------------------------------------------------


@dataclass
class BatchResult:
    selected: int = 0
    enriched: int = 0
    failed: int = 0
    attributions: int = 0
    errors: dict[int, str] = field(default_factory=dict)

    def as_counts(self) -> dict[str, int]:
        return {
            "selected": self.selected,
            "enriched": self.enriched,
            "failed": self.failed,
            "attributions": self.attributions,
        }


def _load_sessions(session_ids: Iterable[str]) -> dict[str, SessionPart]:
    """What each session brings to its events (one MGET), by session id."""
    from yesgoddess.core.redis import redis_connection

    ids = sorted(set(session_ids))
    if not ids:
        return {}
    sessions: dict[str, SessionPart] = {}
    for session_id, raw in zip(ids, redis_connection().mget([SESSION_KEY.format(s) for s in ids]), strict=True):
        if raw is None:
            continue
        part = session_part(raw)
        if part is None:
            log.warning("session %s: stored context is not a JSON object; ignored", session_id[:16])
        else:
            sessions[session_id] = part
    return sessions


@lru_cache(maxsize=8192)
def session_part(raw: bytes) -> SessionPart | None:
    """The SessionPart of a stored session context (None if it is not a JSON object).
    Cached by the stored text, which never changes once written (SET NX): a session's
    events arrive over many batches, and each batch would otherwise decode it again."""
    try:
        context = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return SessionPart.of(context) if isinstance(context, dict) else None


ASSET_FIELDS = ("id", "title", "type", "status", "project_id", "created_by_id", "created_at")
LICENSE_FIELDS = (
    "id",
    "status",
    "license_type",
    "start_date",
    "end_date",
    "fee_cents",
    "rev_share_bps",
    "brand_id",
    "project_id",
    "scope_json",
)

# The batch travels as one JSON document per statement (jsonb_to_recordset): one string
# to send, none of the per-element escaping of text and jsonb arrays.
UPSERT_ATTRIBUTION = f"""
INSERT INTO attribution (event_id, {", ".join(ATTRIBUTION_COLUMNS)}, created_at)
SELECT v.event_id, {", ".join(f"v.{c}" for c in ATTRIBUTION_COLUMNS)}, %s
FROM jsonb_to_recordset(%s::jsonb) AS v(event_id bigint, {", ".join(f"{c} text" for c in ATTRIBUTION_COLUMNS)})
ON CONFLICT (event_id) DO UPDATE SET
  {", ".join(f"{c} = COALESCE(EXCLUDED.{c}, attribution.{c})" for c in ATTRIBUTION_COLUMNS)}
"""

# `v.extra || e.props_json`: a key the event already has wins, so nothing is overwritten.
MARK_EVENTS = """
UPDATE events e SET
  props_json = CASE WHEN v.extra IS NULL THEN e.props_json ELSE v.extra || e.props_json END,
  enrich_pending = false,
  enriched_at = CASE WHEN v.error IS NULL THEN COALESCE(e.enriched_at, %s) ELSE e.enriched_at END,
  enrichment_error = v.error
FROM jsonb_to_recordset(%s::jsonb) AS v(id bigint, extra jsonb, error text)
WHERE e.id = v.id
"""

Update = tuple[int, str | None, str | None]  # (event id, JSON text of the keys to merge, error)
AttributionText = tuple[int, str]  # (event id, JSON members of its attribution columns)


def _write(cursor, now: datetime, updates: list[Update], attributions: list[AttributionText]) -> None:
    if attributions:
        rows = ",".join(f'{{"event_id":{int(event_id)},{columns}' for event_id, columns in attributions)
        cursor.execute(UPSERT_ATTRIBUTION, [now, f"[{rows}]"])
    if updates:
        rows = ",".join(
            f'{{"id":{int(event_id)},"extra":{extra or "null"},"error":{_dumps(error)}}}'
            for event_id, extra, error in updates
        )
        cursor.execute(MARK_EVENTS, [now, f"[{rows}]"])


def _snapshots(rows: list[EventRow], now: datetime) -> tuple[dict[int, dict], dict[int, dict]]:
    """The snapshots of the batch's assets and licenses, by id (one query each)."""
    asset_ids = {row.ip_asset_id for row in rows if row.ip_asset_id is not None}
    license_ids = {row.license_id for row in rows if row.license_id is not None}
    assets = (
        {a["id"]: asset_snapshot(a, now) for a in IpAsset.objects.filter(pk__in=asset_ids).values(*ASSET_FIELDS)}
        if asset_ids
        else {}
    )
    licenses = (
        {
            lic["id"]: license_snapshot(lic, now)
            for lic in License.objects.filter(pk__in=license_ids).values(*LICENSE_FIELDS)
        }
        if license_ids
        else {}
    )
    return assets, licenses


def enrich_rows(rows: list[EventRow], now: datetime | None = None) -> BatchResult:
    """Enrich `rows` (already locked by the caller's transaction) and mark them."""
    now = now or timezone.now()
    result = BatchResult(selected=len(rows))
    if not rows:
        return result
    parts = BatchParts(*_snapshots(rows, now), _load_sessions(row.session_id for row in rows if row.session_id))

    updates: list[Update] = []
    attributions: list[AttributionText] = []
    for row in rows:
        try:
            extra, attribution = enrich_one(row, parts)
        except PoisonEvent as exc:
            updates.append((row.id, None, str(exc)))
            result.errors[row.id] = str(exc)
            continue
        except Exception as exc:  # a bug or data nobody foresaw: this event only
            log.exception("enrich event %s failed", row.id)
            updates.append((row.id, None, f"{type(exc).__name__}: {exc}"[:2000]))
            result.errors[row.id] = f"{type(exc).__name__}: {exc}"
            continue
        updates.append((row.id, extra, None))
        if attribution is not None:
            attributions.append((row.id, attribution))

    with connection.cursor() as cursor:
        try:
            with transaction.atomic():
                _write(cursor, now, updates, attributions)
        except DatabaseError:
            log.warning("enrichment batch of %s events failed in the database; writing them one by one", len(rows))
            _write_one_by_one(cursor, now, updates, attributions, result)
    result.failed = len(result.errors)
    result.enriched = len(rows) - result.failed
    result.attributions = len([1 for event_id, _ in attributions if event_id not in result.errors])
    return result


def _write_one_by_one(
    cursor, now: datetime, updates: list[Update], attributions: list[AttributionText], result: BatchResult
) -> None:
    by_event = dict(attributions)
    for event_id, extra, error in updates:
        try:
            with transaction.atomic():
                columns = by_event.get(event_id)
                _write(cursor, now, [(event_id, extra, error)], [(event_id, columns)] if columns else [])
        except DatabaseError as exc:
            reason = f"database refused the enrichment: {exc}".strip()[:2000]
            result.errors[event_id] = reason
            with transaction.atomic():
                _write(cursor, now, [(event_id, None, reason)], [])


def select_pending(batch: int) -> list[EventRow]:
    """Up to `batch` pending events, oldest first, locked (the caller's transaction)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE enrich_pending ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            [batch],
        )
        return [EventRow(*row) for row in cursor.fetchall()]


def more_pending_than(count: int) -> bool:
    """Whether over `count` events are pending (locked ones included; partial index)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM (SELECT 1 FROM events WHERE enrich_pending LIMIT %s) p", [count + 1])
        return cursor.fetchone()[0] > count


def flush_pending(batch: int | None = None) -> dict[str, int]:
    """One flush: release the queued marker, enrich up to `batch` pending events, and
    queue the next flush while pending events remain."""
    size = batch or settings.ANALYTICS_ENRICH_BATCH
    release_flush_marker()
    requeued = False
    if more_pending_than(size):
        # More than this flush will take: let another worker start on the rest now.
        requeued = ensure_flush_queued()
    with transaction.atomic():
        rows = select_pending(size)
        result = enrich_rows(rows)
    if len(rows) == size and not requeued:
        requeued = ensure_flush_queued()
    return {**result.as_counts(), "requeued": int(requeued)}


def enrich_event_by_id(event_id: int) -> BatchResult | None:
    """Enrich one event whatever its state (the operators' per-item job); None if missing."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE id = %s FOR UPDATE", [event_id])
            rows = [EventRow(*row) for row in cursor.fetchall()]
        if not rows:
            return None
        return enrich_rows(rows)


def sweep() -> dict[str, int]:
    """Queue a flush if events are pending and none is queued (the safety net)."""
    pending = more_pending_than(0)
    return {"pending": int(pending), "queued": int(pending and ensure_flush_queued())}


def enrich_event(event_id: int) -> dict[str, int | str]:
    """Enrich one event whatever its state; its counts, with the error of a poison event.
    Raises Event.DoesNotExist for an unknown id."""
    result = enrich_event_by_id(event_id)
    if result is None:
        raise InvalidInput(f"event {event_id} does not exist")
    counts: dict[str, int | str] = dict(result.as_counts())
    if result.errors:
        counts["error"] = result.errors[event_id]
    return counts
