"""Campaign rules shared by the API, the admin and the jobs.

- Creating a campaign checks its template and content; `build_recipients` adds every
  active user with an email (optionally only some roles) in one INSERT ... SELECT,
  leaving out suppressed and opted-out addresses (the sender checks again per batch).
- Status changes are conditional updates on the row (`send`, `pause`, `resume`,
  `cancel`): two clicks, or a click racing the job, cannot both win.
- `resume` records the critical reputation conditions it resumes over
  (`reputation_accepted`): neither reputation-monitoring nor the batch jobs pause the
  campaign again for reputation unless it gets worse than that.
- `send` and `resume` enqueue `email-campaign`, deduplicated per campaign, so one chain
  of batch jobs runs per campaign; a scheduled campaign's first job waits until
  `scheduled_send_time` (RQ's delayed job), never a sleeping worker.
- `campaign_message` builds one recipient's message: the campaign's template with the
  recipient's personalization, the List-Unsubscribe headers (RFC 8058 one-click), a
  Message-ID kept on the recipient and anymail tags/metadata for provider webhooks.

What the batch jobs do with a campaign once it is sent (claim, send, pace, complete)
is `sending`.
"""

from __future__ import annotations

from datetime import datetime
from email.utils import make_msgid
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives
from django.core.mail.utils import DNS_NAME
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.html import escape

from jobs.api import enqueue
from yesgoddess.emailing.message import TemplateEmail
from yesgoddess.emailing.models import EmailCategory
from yesgoddess.emailing.reputation import pausing_by_domain, worse_than
from yesgoddess.emailing.services import list_unsubscribe_headers, normalise, unsubscribe_url
from yesgoddess.notifications.services import build_email, render_email

from .models import (
    CAMPAIGN_TEMPLATES,
    MAX_BATCH_SIZE,
    MAX_MESSAGES_PER_HOUR,
    CampaignRecipient,
    CampaignStatus,
    DigestFrequency,
    EmailCampaign,
    EmailDeliveryPreference,
    RecipientStatus,
)

CATEGORY = EmailCategory.CAMPAIGNS.value
JOB = "email-campaign"
SUMMARY_CHARS = 280


class CampaignError(Exception):
    """A request the campaign cannot take: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --- creation ------------------------------------------------------------------------


def _positive(value: Any, name: str, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise CampaignError(400, f"{name} must be an integer from 1 to {maximum}.")
    return value


def check_content(template: str, content: Any) -> dict[str, Any]:
    if template not in CAMPAIGN_TEMPLATES:
        raise CampaignError(400, f"template must be one of {', '.join(sorted(CAMPAIGN_TEMPLATES))}.")
    if not isinstance(content, dict):
        raise CampaignError(400, "content must be an object.")
    missing = [name for name in CAMPAIGN_TEMPLATES[template] if not content.get(name)]
    if missing:
        raise CampaignError(400, f"template {template} needs content fields: {', '.join(missing)}.")
    if template == "campaign_newsletter":
        items = content["items"]
        if not isinstance(items, list) or not all(isinstance(i, dict) and i.get("title") for i in items):
            raise CampaignError(400, "content.items must be a list of objects with a title.")
    return content


def create_campaign(
    *,
    name: str,
    subject: str,
    template: str,
    content: dict[str, Any],
    created_by_id: int | None = None,
    preview_text: str = "",
    description: str = "",
    scheduled_send_time: datetime | None = None,
    batch_size: int = 100,
    messages_per_hour: int = 1000,
    segment: dict[str, Any] | None = None,
) -> EmailCampaign:
    """A DRAFT campaign; with `segment`, its recipients too (see `build_recipients`)."""
    if not name or not subject:
        raise CampaignError(400, "name and subject are required.")
    campaign = EmailCampaign(
        name=name[:255],
        subject=subject[:500],
        template=template,
        content=check_content(template, content),
        created_by_id=created_by_id,
        preview_text=preview_text[:200],
        description=description,
        scheduled_send_time=scheduled_send_time,
        batch_size=_positive(batch_size, "batch_size", MAX_BATCH_SIZE),
        messages_per_hour=_positive(messages_per_hour, "messages_per_hour", MAX_MESSAGES_PER_HOUR),
        segment_criteria=segment,
    )
    with transaction.atomic():
        campaign.save()
        if segment is not None:
            build_recipients(campaign, segment)
    return campaign


def build_recipients(campaign: EmailCampaign, segment: dict[str, Any]) -> int:
    """Add the segment's users to a DRAFT campaign in one statement; return how many.

    Segment: `{}` or `{"all": true}` = every active, non-deleted user with an email;
    `{"roles": ["CREATOR", ...]}` = only those roles. Addresses suppressed or opted out
    of campaigns are left out; an address already on the campaign is not added twice.
    """
    if campaign.status != CampaignStatus.DRAFT:
        raise CampaignError(409, f"Recipients can only be added to a DRAFT campaign, not {campaign.status}.")
    if not isinstance(segment, dict):
        raise CampaignError(400, "segment must be an object.")
    roles = segment.get("roles")
    valid_roles = set(get_user_model().Role.values)
    if roles is not None and (not isinstance(roles, list) or not roles or not set(roles) <= valid_roles):
        raise CampaignError(400, f"segment.roles must be a non-empty list of {', '.join(sorted(valid_roles))}.")
    role_filter = "AND u.role = ANY(%(roles)s)" if roles else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO campaign_recipients (campaign_id, user_id, email, status, personalization, error, message_id,
                                             created_at)
            SELECT %(campaign)s, u.id, lower(trim(u.email)), 'PENDING',
                   jsonb_build_object('user_name', COALESCE(NULLIF(u.first_name, ''), u.username),
                                      'user_role', u.role),
                   '', '', now()
            FROM users u
            WHERE u.is_active AND u.deleted_at IS NULL AND trim(u.email) <> '' {role_filter}
              AND NOT EXISTS (SELECT 1 FROM email_suppressions s WHERE s.email = lower(trim(u.email)))
              AND NOT EXISTS (SELECT 1 FROM email_opt_outs o WHERE o.email = lower(trim(u.email))
                              AND o.category IN (%(category)s, 'all'))
            ORDER BY u.id
            ON CONFLICT (campaign_id, email) DO NOTHING
            """,
            {"campaign": campaign.pk, "roles": roles, "category": CATEGORY},
        )
        added = cursor.rowcount
    refresh_counters(campaign.pk)
    campaign.refresh_from_db(fields=["recipient_count"])
    return added


def add_recipients(campaign: EmailCampaign, recipients: list[dict[str, Any]]) -> int:
    """Add explicit recipients ({"email": ..., "user_id"?: ..., "personalization"?: {...}})."""
    if campaign.status != CampaignStatus.DRAFT:
        raise CampaignError(409, f"Recipients can only be added to a DRAFT campaign, not {campaign.status}.")
    rows = [
        CampaignRecipient(
            campaign=campaign,
            email=normalise(item["email"]),
            user_id=item.get("user_id"),
            personalization=item.get("personalization") or {},
        )
        for item in recipients
        if item.get("email")
    ]
    before = campaign.recipients.count()
    CampaignRecipient.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
    refresh_counters(campaign.pk)
    campaign.refresh_from_db(fields=["recipient_count"])
    return campaign.recipient_count - before


# --- counters and progress ----------------------------------------------------------------


def recipient_counts(campaign_id: int) -> dict[str, int]:
    """Recipients by status (one GROUP BY over the campaign's index)."""
    rows = (
        CampaignRecipient.objects.filter(campaign_id=campaign_id)
        .values("status")
        .annotate(n=Count("pk"))
        .order_by("status")
    )
    counts = {status: 0 for status in RecipientStatus.values}
    counts.update({row["status"]: row["n"] for row in rows})
    return counts


def refresh_counters(campaign_id: int) -> dict[str, int]:
    """Set the campaign's counters from its recipients' states; return the counts."""
    counts = recipient_counts(campaign_id)
    EmailCampaign.objects.filter(pk=campaign_id).update(
        recipient_count=sum(counts.values()),
        sent_count=counts[RecipientStatus.SENT],
        failed_count=counts[RecipientStatus.FAILED],
        skipped_count=counts[RecipientStatus.SKIPPED],
        deferred_count=counts[RecipientStatus.DEFERRED],
    )
    return counts


def campaign_json(campaign: EmailCampaign) -> dict[str, Any]:
    counts = recipient_counts(campaign.pk)
    total = sum(counts.values())
    done = total - counts[RecipientStatus.PENDING] - counts[RecipientStatus.SENDING]

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": campaign.pk,
        "name": campaign.name,
        "status": campaign.status,
        "status_reason": campaign.status_reason,
        "template": campaign.template,
        "subject": campaign.subject,
        "scheduled_send_time": iso(campaign.scheduled_send_time),
        "send_started_at": iso(campaign.send_started_at),
        "send_completed_at": iso(campaign.send_completed_at),
        "batch_size": campaign.batch_size,
        "messages_per_hour": campaign.messages_per_hour,
        "recipients": counts,
        "progress": {"total": total, "done": done, "percent": round(100 * done / total, 1) if total else 0.0},
        "counters": {
            name: getattr(campaign, f"{name}_count")
            for name in (
                "recipient",
                "sent",
                "failed",
                "skipped",
                "deferred",
                "delivered",
                "opened",
                "clicked",
                "bounced",
                "complained",
                "unsubscribed",
            )
        },
        "job_id": campaign.job_id or None,
        "reputation_accepted": campaign.reputation_accepted or {},
    }


# --- status changes --------------------------------------------------------------------


def _delay(campaign: EmailCampaign, now: datetime) -> float | None:
    if campaign.send_started_at is None and campaign.scheduled_send_time is not None:
        seconds = (campaign.scheduled_send_time - now).total_seconds()
        if seconds >= 1:
            return seconds
    return None


def chain_key(campaign_id: int) -> str:
    """The dedup key of a campaign's `email-campaign` chain (one chain per campaign)."""
    return f"campaign-{campaign_id}"


def _enqueue(campaign: EmailCampaign, now: datetime) -> str:
    job_id = enqueue(JOB, dedup_key=chain_key(campaign.pk), delay=_delay(campaign, now), campaign_id=campaign.pk)
    campaign.job_id = job_id
    EmailCampaign.objects.filter(pk=campaign.pk).update(job_id=job_id)
    return job_id


def _locked(campaign_id: int) -> EmailCampaign:
    campaign = EmailCampaign.objects.select_for_update().filter(pk=campaign_id).first()
    if campaign is None:
        raise CampaignError(404, "Campaign not found.")
    return campaign


def send(campaign_id: int, now: datetime | None = None) -> EmailCampaign:
    """DRAFT -> SCHEDULED and its first batch job enqueued, at `scheduled_send_time` or
    now. A PAUSED (or FAILED) campaign resumes instead."""
    now = now or timezone.now()
    with transaction.atomic():
        campaign = _locked(campaign_id)
        if campaign.status in (CampaignStatus.PAUSED, CampaignStatus.FAILED):
            return _resume(campaign, now)
        if campaign.status != CampaignStatus.DRAFT:
            raise CampaignError(409, f"The campaign is {campaign.status}; only a DRAFT campaign can be sent.")
        if not campaign.recipients.filter(status=RecipientStatus.PENDING).exists():
            raise CampaignError(409, "The campaign has no recipients.")
        campaign.status = CampaignStatus.SCHEDULED
        campaign.status_reason = ""
        campaign.save(update_fields=["status", "status_reason", "updated_at"])
        _enqueue(campaign, now)
    return campaign


def _resume(campaign: EmailCampaign, now: datetime) -> EmailCampaign:
    campaign.status = CampaignStatus.SENDING if campaign.send_started_at else CampaignStatus.SCHEDULED
    campaign.paused_at = None
    campaign.status_reason = ""
    # The operator resumes over the reputation as it stands: only worse pauses it again.
    campaign.reputation_accepted = pausing_by_domain()
    campaign.save(update_fields=["status", "paused_at", "status_reason", "reputation_accepted", "updated_at"])
    _enqueue(campaign, now)
    return campaign


def resume(campaign_id: int, now: datetime | None = None) -> EmailCampaign:
    """PAUSED (or FAILED) -> sending again from where it stopped: only PENDING recipients
    remain, so nobody gets it twice."""
    now = now or timezone.now()
    with transaction.atomic():
        campaign = _locked(campaign_id)
        if campaign.status not in (CampaignStatus.PAUSED, CampaignStatus.FAILED):
            raise CampaignError(409, f"The campaign is {campaign.status}; only a PAUSED or FAILED one can resume.")
        return _resume(campaign, now)


def pause(campaign_id: int, reason: str = "", now: datetime | None = None) -> EmailCampaign:
    """SCHEDULED/SENDING -> PAUSED. The batch job in flight finishes its batch; the next
    one sees PAUSED and stops."""
    now = now or timezone.now()
    with transaction.atomic():
        campaign = _locked(campaign_id)
        if campaign.status not in (CampaignStatus.SCHEDULED, CampaignStatus.SENDING):
            raise CampaignError(409, f"The campaign is {campaign.status}; only a SCHEDULED or SENDING one can pause.")
        campaign.status = CampaignStatus.PAUSED
        campaign.paused_at = now
        campaign.status_reason = reason[:2000]
        campaign.save(update_fields=["status", "paused_at", "status_reason", "updated_at"])
    return campaign


def pause_running_campaigns(
    reason: str, now: datetime | None = None, *, domain: str | None = None, conditions: dict[str, float] | None = None
) -> list[int]:
    """Pause every SCHEDULED or SENDING campaign (reputation-monitoring at the critical
    level); return their ids. Each stops before its next batch. With the critical
    `conditions` of sender `domain`, a campaign an operator resumed over conditions at
    least as bad is left running: their resume holds unless reputation gets worse."""
    now = now or timezone.now()
    with transaction.atomic():
        running = (
            EmailCampaign.objects.select_for_update()
            .filter(status__in=(CampaignStatus.SCHEDULED, CampaignStatus.SENDING))
            .values_list("pk", "reputation_accepted")
        )
        ids = [
            pk
            for pk, accepted in running
            if conditions is None or worse_than(conditions, (accepted or {}).get(domain or "", {}))
        ]
        EmailCampaign.objects.filter(pk__in=ids).update(
            status=CampaignStatus.PAUSED, paused_at=now, status_reason=reason[:2000], updated_at=now
        )
    return ids


def cancel(
    campaign_id: int, user_id: int | None = None, reason: str = "", now: datetime | None = None
) -> EmailCampaign:
    """Any campaign not yet COMPLETED or CANCELLED -> CANCELLED; its PENDING recipients
    are SKIPPED ("campaign cancelled"). A batch in flight still settles its rows."""
    now = now or timezone.now()
    with transaction.atomic():
        campaign = _locked(campaign_id)
        if campaign.status in (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED):
            raise CampaignError(409, f"The campaign is {campaign.status} already.")
        campaign.status = CampaignStatus.CANCELLED
        campaign.cancelled_at = now
        campaign.cancelled_by_id = user_id
        campaign.status_reason = reason[:2000]
        campaign.save(update_fields=["status", "cancelled_at", "cancelled_by", "status_reason", "updated_at"])
        campaign.recipients.filter(status=RecipientStatus.PENDING).update(
            status=RecipientStatus.SKIPPED, error="campaign cancelled"
        )
        refresh_counters(campaign.pk)
    return campaign


# --- messages ----------------------------------------------------------------------------


def campaign_context(campaign: EmailCampaign, recipient: CampaignRecipient) -> dict[str, Any]:
    personal = recipient.personalization if isinstance(recipient.personalization, dict) else {}
    return {
        **campaign.content,
        "subject": campaign.subject,
        "preview_text": campaign.preview_text,
        "user_name": personal.get("user_name") or "there",
        "user_role": personal.get("user_role") or "",
        "app_url": settings.APP_URL,
        "unsubscribe_url": unsubscribe_url(recipient.email, CATEGORY),
    }


def _finish(
    message: EmailMultiAlternatives, campaign: EmailCampaign, recipient: CampaignRecipient, headers: dict[str, str]
) -> tuple[EmailMultiAlternatives, str]:
    message_id = make_msgid(domain=str(DNS_NAME))
    message.extra_headers.update(headers)
    message.extra_headers["Message-ID"] = message_id
    # django-anymail sends these to the ESP, whose webhooks then name the recipient.
    message.tags = ["campaign"]
    message.metadata = {"campaign_id": str(campaign.pk), "campaign_recipient_id": str(recipient.pk)}
    return message, message_id


def campaign_message(campaign: EmailCampaign, recipient: CampaignRecipient) -> tuple[EmailMultiAlternatives, str]:
    """(message, its Message-ID) for one recipient, rendered from scratch."""
    message = build_email(campaign.template, recipient.email, campaign_context(campaign, recipient))
    return _finish(message, campaign, recipient, list_unsubscribe_headers(recipient.email, CATEGORY))


class CampaignRenderer:
    """Builds a batch's messages, rendering the campaign's templates once per `user_role`
    instead of once per recipient.

    The per-recipient values (`user_name`, `unsubscribe_url`) are rendered as marker
    tokens and substituted afterwards, HTML-escaped exactly where Django escaped the
    token (the token contains "&", so an escaped occurrence reads "&amp;"). A template
    that transforms a token (a filter on `user_name`, say) leaves a marker behind; the
    campaign is then rendered per recipient (`campaign_message`), as before.
    """

    TOKENS = {name: f"\ue000{name}&\ue001" for name in ("user_name", "unsubscribe_url")}
    MARKERS = ("\ue000", "\ue001")

    def __init__(self, campaign: EmailCampaign) -> None:
        self.campaign = campaign
        self.parts: dict[str, tuple[str, str, str] | None] = {}

    def _parts(self, role: str) -> tuple[str, str, str] | None:
        if role not in self.parts:
            context = {
                **self.campaign.content,
                "subject": self.campaign.subject,
                "preview_text": self.campaign.preview_text,
                "user_role": role,
                "app_url": settings.APP_URL,
                **self.TOKENS,
            }
            parts = render_email(self.campaign.template, context)
            probe = tuple(self._fill(part, {name: "x" for name in self.TOKENS}) for part in parts)
            usable = not any(marker in part for part in probe for marker in self.MARKERS)
            self.parts[role] = parts if usable else None
        return self.parts[role]

    def _fill(self, text: str, values: dict[str, str]) -> str:
        for name, token in self.TOKENS.items():
            if token in text:
                text = text.replace(token, values[name])
            escaped = str(escape(token))
            if escaped in text:
                text = text.replace(escaped, str(escape(values[name])))
        return text

    def message(self, recipient: CampaignRecipient) -> tuple[EmailMultiAlternatives, str]:
        personal = recipient.personalization if isinstance(recipient.personalization, dict) else {}
        parts = self._parts(str(personal.get("user_role") or ""))
        if parts is None:
            return campaign_message(self.campaign, recipient)
        headers = list_unsubscribe_headers(recipient.email, CATEGORY)
        values = {
            "user_name": str(personal.get("user_name") or "there"),
            "unsubscribe_url": headers["List-Unsubscribe"][1:-1],
        }
        subject = (self._fill(parts[0], values).strip().splitlines() or [""])[0]  # as render_email does
        text, html = self._fill(parts[1], values), self._fill(parts[2], values)
        message = TemplateEmail(subject, text, settings.DEFAULT_FROM_EMAIL, [recipient.email])
        message.attach_alternative(html, "text/html")
        return _finish(message, self.campaign, recipient, headers)


def campaign_summary(campaign: EmailCampaign) -> str:
    content = campaign.content or {}
    text = campaign.preview_text or content.get("headline") or content.get("intro") or content.get("body") or ""
    text = " ".join(str(text).split())
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1].rstrip() + "…"


def campaign_link(campaign: EmailCampaign) -> str:
    content = campaign.content or {}
    return str(content.get("cta_url") or settings.APP_URL)


def digest_users(user_ids: list[int], category: str = CATEGORY) -> set[int]:
    """Users among `user_ids` who take `category` as a daily or weekly digest (one query)."""
    ids = [user_id for user_id in user_ids if user_id is not None]
    if not ids:
        return set()
    return set(
        EmailDeliveryPreference.objects.filter(
            user_id__in=ids, category=category, frequency__in=(DigestFrequency.DAILY, DigestFrequency.WEEKLY)
        ).values_list("user_id", flat=True)
    )


def set_delivery_preference(user_id: int, frequency: str, category: str = CATEGORY) -> None:
    if frequency not in DigestFrequency.values:
        raise CampaignError(400, f"frequency must be one of {', '.join(DigestFrequency.values)}.")
    EmailDeliveryPreference.objects.update_or_create(
        user_id=user_id, category=category, defaults={"frequency": frequency}
    )
