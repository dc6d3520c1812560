"""Sender reputation from recorded email events (spec C §2.13, thresholds from DECISIONS).

Over a window of events (reputation-monitoring uses the last 30 days), per sender domain:
sent, delivered, bounced and complained events; opened and clicked count messages (a
message opened five times is one open). Rates are fractions of `sent` (opens and clicks
of `delivered`, absent when nothing was reported delivered).

Thresholds are inclusive (">="): bounce rate 2 % warning, 5 % critical; complaint rate
0.1 % warning, 0.3 % critical; reputation score <= 70 warning, <= 50 critical; and the
delivery rate, which the original defined but never checked, below 95 % warning, below
90 % critical (only once the provider reports deliveries at all). Rates are compared as
exact fractions, so 20 bounces in 1,000 sends is exactly the 2 % boundary. Below
EMAIL_REPUTATION_MIN_SENT sends nothing is judged.

A critical bounce rate, complaint rate or score pauses running campaigns; a low delivery
rate only alerts (deliveries are reported minutes after the send, so a campaign sent
just before the run looks undelivered for a while). An operator who resumes a campaign
accepts the pausing conditions of that moment (`pausing_by_domain`): it is paused again
only when reputation gets worse than that (`worse_than`), not while the 30-day window
still holds the bad days it was resumed over.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, Value
from django.db.models.functions import Concat

from .models import EmailEvent, EmailEventType

WARNING = "warning"
CRITICAL = "critical"

BOUNCE_WARNING, BOUNCE_CRITICAL = Fraction(2, 100), Fraction(5, 100)
COMPLAINT_WARNING, COMPLAINT_CRITICAL = Fraction(1, 1000), Fraction(3, 1000)
SCORE_WARNING, SCORE_CRITICAL = 70, 50
DELIVERY_WARNING, DELIVERY_CRITICAL = Fraction(95, 100), Fraction(90, 100)
# Metrics whose critical level pauses running campaigns.
PAUSING_METRICS = ("bounce_rate", "complaint_rate", "reputation_score")

COUNTS = ("sent", "delivered", "bounced", "complained", "opened", "clicked")


@dataclass(frozen=True)
class Figures:
    sent: int = 0
    delivered: int = 0
    bounced: int = 0
    complained: int = 0
    opened: int = 0
    clicked: int = 0

    def rate(self, part: int, whole: int) -> Fraction | None:
        return Fraction(part, whole) if whole else None

    @property
    def bounce_rate(self) -> Fraction:
        return self.rate(self.bounced, self.sent) or Fraction(0)

    @property
    def complaint_rate(self) -> Fraction:
        return self.rate(self.complained, self.sent) or Fraction(0)

    @property
    def delivery_rate(self) -> Fraction:
        return self.rate(self.delivered, self.sent) or Fraction(0)

    @property
    def open_rate(self) -> Fraction | None:
        return self.rate(self.opened, self.delivered)

    @property
    def click_rate(self) -> Fraction | None:
        return self.rate(self.clicked, self.delivered)

    @property
    def score(self) -> int:
        """Start at 100; penalties for bounces over 1 % and any complaints, bonuses for
        delivery over 95 %, opens over 20 % and clicks over 5 %; rounded half up, 0-100."""
        score = 100.0
        if self.bounce_rate > Fraction(1, 100):
            score -= float(self.bounce_rate - Fraction(1, 100)) * 1000
        if self.complaint_rate > 0:
            score -= float(self.complaint_rate) * 10000
        if self.delivery_rate > Fraction(95, 100):
            score += float(self.delivery_rate - Fraction(95, 100)) * 100
        if self.open_rate is not None and self.open_rate > Fraction(20, 100):
            score += float(self.open_rate - Fraction(20, 100)) * 50
        if self.click_rate is not None and self.click_rate > Fraction(5, 100):
            score += float(self.click_rate - Fraction(5, 100)) * 100
        return max(0, min(100, math.floor(score + 0.5)))

    def row_values(self) -> dict[str, Any]:
        """The columns of an EmailReputationMetric row."""

        def optional(value: Fraction | None) -> float | None:
            return None if value is None else float(value)

        return {
            **{name: getattr(self, name) for name in COUNTS},
            "bounce_rate": float(self.bounce_rate),
            "complaint_rate": float(self.complaint_rate),
            "delivery_rate": float(self.delivery_rate),
            "open_rate": optional(self.open_rate),
            "click_rate": optional(self.click_rate),
            "reputation_score": self.score,
        }


@dataclass(frozen=True)
class Condition:
    metric: str
    severity: str
    message: str
    recommendation: str
    value: float
    threshold: float

    @property
    def key(self) -> str:
        """What "the same alert" means within a day: a warning that turns critical is new."""
        return f"{self.metric}:{self.severity}"

    @property
    def pauses_campaigns(self) -> bool:
        return self.severity == CRITICAL and self.metric in PAUSING_METRICS

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, **asdict(self)}


def figures_by_domain(since: datetime, until: datetime, domain: str | None = None) -> dict[str, Figures]:
    """Counts per sender domain of the events in [since, until): one query."""
    events = EmailEvent.objects.filter(occurred_at__gte=since, occurred_at__lt=until)
    if domain:
        events = events.filter(sender_domain=domain)
    per_message = Concat("message_id", Value(" "), "email")

    def of(kind: str) -> Q:
        return Q(event_type=kind)

    rows = (
        events.order_by()
        .values("sender_domain")
        .annotate(
            sent=Count("id", filter=of(EmailEventType.SENT)),
            delivered=Count("id", filter=of(EmailEventType.DELIVERED)),
            bounced=Count("id", filter=of(EmailEventType.BOUNCED)),
            complained=Count("id", filter=of(EmailEventType.COMPLAINED)),
            opened=Count(per_message, distinct=True, filter=of(EmailEventType.OPENED)),
            clicked=Count(per_message, distinct=True, filter=of(EmailEventType.CLICKED)),
        )
    )
    return {row["sender_domain"]: Figures(**{name: row[name] for name in COUNTS}) for row in rows}


def _pct(value: Fraction | float) -> float:
    return round(float(value), 6)


def conditions(figures: Figures) -> list[Condition]:
    """The alert conditions the figures meet, worst first per metric."""
    if figures.sent < settings.EMAIL_REPUTATION_MIN_SENT:
        return []
    found: list[Condition] = []
    bounce = figures.bounce_rate
    if bounce >= BOUNCE_CRITICAL:
        found.append(
            Condition(
                "bounce_rate",
                CRITICAL,
                "Critical bounce rate detected",
                "Pause sending, clean the list: remove hard bounces and validate addresses before resuming",
                _pct(bounce),
                _pct(BOUNCE_CRITICAL),
            )
        )
    elif bounce >= BOUNCE_WARNING:
        found.append(
            Condition(
                "bounce_rate",
                WARNING,
                "Elevated bounce rate",
                "Review list quality and validate addresses when they are collected",
                _pct(bounce),
                _pct(BOUNCE_WARNING),
            )
        )
    complaints = figures.complaint_rate
    if complaints >= COMPLAINT_CRITICAL:
        found.append(
            Condition(
                "complaint_rate",
                CRITICAL,
                "Critical spam complaint rate",
                "Review content and sending frequency, and make unsubscribing prominent",
                _pct(complaints),
                _pct(COMPLAINT_CRITICAL),
            )
        )
    elif complaints >= COMPLAINT_WARNING:
        found.append(
            Condition(
                "complaint_rate",
                WARNING,
                "Elevated spam complaint rate",
                "Review relevance and targeting, and reduce frequency",
                _pct(complaints),
                _pct(COMPLAINT_WARNING),
            )
        )
    score = figures.score
    if score <= SCORE_CRITICAL:
        found.append(
            Condition(
                "reputation_score",
                CRITICAL,
                "Critical reputation score",
                "Running campaigns are paused while it lasts; fix the causes of bounces and complaints first",
                score,
                SCORE_CRITICAL,
            )
        )
    elif score <= SCORE_WARNING:
        found.append(
            Condition(
                "reputation_score",
                WARNING,
                "Low reputation score",
                "Watch bounce and complaint rates and clean the list",
                score,
                SCORE_WARNING,
            )
        )
    if figures.delivered:
        delivery = figures.delivery_rate
        if delivery < DELIVERY_CRITICAL:
            found.append(
                Condition(
                    "delivery_rate",
                    CRITICAL,
                    "Critical delivery rate",
                    "Check the provider's logs for blocks and deferrals; review authentication (SPF, DKIM, DMARC)",
                    _pct(delivery),
                    _pct(DELIVERY_CRITICAL),
                )
            )
        elif delivery < DELIVERY_WARNING:
            found.append(
                Condition(
                    "delivery_rate",
                    WARNING,
                    "Low delivery rate",
                    "Check the provider's logs for deferrals and blocks",
                    _pct(delivery),
                    _pct(DELIVERY_WARNING),
                )
            )
    return found


def pausing(warnings: list[dict[str, Any]] | None) -> dict[str, float]:
    """The conditions of a reputation row's `warnings` that pause campaigns: metric -> value."""
    return {
        w["metric"]: w["value"]
        for w in warnings or []
        if w.get("severity") == CRITICAL and w.get("metric") in PAUSING_METRICS
    }


def latest_pausing(domain: str | None = None) -> dict[str, float]:
    """The pausing conditions of the latest reputation row of `domain` (default
    EMAIL_SENDER_DOMAIN): what a campaign worker checks before a batch."""
    from .models import EmailReputationMetric

    row = (
        EmailReputationMetric.objects.filter(sender_domain=domain or settings.EMAIL_SENDER_DOMAIN)
        .order_by("-date")
        .values_list("warnings", flat=True)
        .first()
    )
    return pausing(row)


def pausing_by_domain() -> dict[str, dict[str, float]]:
    """The pausing conditions of every sender domain's latest row (domains with none left
    out): what an operator accepts by resuming a campaign. One query."""
    from .models import EmailReputationMetric

    rows = (
        EmailReputationMetric.objects.order_by("sender_domain", "-date")
        .distinct("sender_domain")
        .values_list("sender_domain", "warnings")
    )
    return {domain: found for domain, warnings in rows if (found := pausing(warnings))}


def worse_than(current: dict[str, float], accepted: dict[str, float]) -> bool:
    """Whether the pausing conditions `current` are worse than those `accepted` when a
    campaign was resumed: a metric critical now that was not then, or one further past
    its threshold (a higher bounce or complaint rate, a lower score)."""
    for metric, value in current.items():
        if metric not in accepted:
            return True
        if value < accepted[metric] if metric == "reputation_score" else value > accepted[metric]:
            return True
    return False


def latest_is_critical(domain: str | None = None) -> bool:
    """Whether the latest reputation row of `domain` (default EMAIL_SENDER_DOMAIN) holds a
    condition that pauses campaigns."""
    return bool(latest_pausing(domain))
