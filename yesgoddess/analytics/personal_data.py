"""Personal data of the analytics app (`yesgoddess.core.privacy` says what each declaration
means).

An event names its actor by id (`user_id`, `actor_id`): once the account is erased the id
names nobody, and the roll-ups (counts, distinct visitors by id) stay true. What an event
may carry about the person themselves (the client's user agent and any address or name
it sent in `props`, the pages it came from) is erased with the account.
"""

from __future__ import annotations

from django.db import connection
from django.db.models import Q

from yesgoddess.core.privacy import Subject, erased, not_personal

from .models import Attribution, Event

# Keys of `props_json` that describe the person or their device, dropped from an erased
# account's events (`userAgent` is read by the enrichment; the rest are what a client
# could send about a person).
IDENTIFYING_PROPS = ["userAgent", "ip", "ipAddress", "email", "name", "fullName", "phone"]

ERASE_PROPS_SQL = """
UPDATE {events} SET props_json = props_json - %(keys)s::text[]
WHERE (user_id = %(user_id)s OR (actor_type = 'user' AND actor_id = %(actor_id)s))
  AND jsonb_typeof(props_json) = 'object' AND props_json ?| %(keys)s::text[]
"""


def _account_events(subject: Subject):
    return Event.objects.filter(Q(user_id=subject.user_id) | Q(actor_type="user", actor_id=str(subject.user_id)))


def erase_event_props(subject: Subject) -> int:
    """Drop the identifying props of the account's events (one UPDATE)."""
    with connection.cursor() as cursor:
        cursor.execute(
            ERASE_PROPS_SQL.format(events=Event._meta.db_table),
            {"keys": IDENTIFYING_PROPS, "user_id": subject.user_id, "actor_id": str(subject.user_id)},
        )
        return cursor.rowcount


def erase_attribution_urls(subject: Subject) -> int:
    """The pages the account's visits came from and landed on (URLs can carry anything)."""
    return (
        Attribution.objects.filter(event__in=_account_events(subject))
        .filter(Q(referrer__isnull=False) | Q(landing_page__isnull=False))
        .update(referrer=None, landing_page=None)
    )


DECLARATIONS = [
    erased(
        "analytics.Event",
        ("props_json",),
        by=erase_event_props,
        how=f"the account's events lose the props {', '.join(IDENTIFYING_PROPS)}",
    ),
    erased(
        "analytics.Attribution",
        ("referrer", "landing_page"),
        by=erase_attribution_urls,
        how="cleared for the account's events",
    ),
    not_personal(
        "analytics.Event",
        ("session_id",),
        "a random id the client chose; it links the events of one visit (an erased account's to nobody)",
    ),
    not_personal("analytics.Event", ("enrichment_error",), "an error message"),
    not_personal("analytics.Attribution", ("device_type", "browser"), "device and browser families, not a device"),
    not_personal("analytics.PostDailyMetric", ("device_breakdown",), "counts per device family"),
    not_personal("analytics.MetricsAggregationLog", ("error_message",), "an error message"),
]
