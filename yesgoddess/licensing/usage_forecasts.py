"""Usage forecasts and breach alerts (spec B §5.5: `license-usage-tracking.forecasts`
and `.breach-alerts`).

`generate_forecasts` (the forecasts job) runs `forecast_batch` over every eligible
license, BATCH_LICENSES at a time (a failed batch is logged, the others run, and the run
fails at the end); `forecast_batch` upserts one linear forecast per (license, usage type)
and day (the maths: `project_usage`). `send_breach_alerts` tells a brand, in-app and by email, when a usage
limit is forecast to be exceeded within 7 days, at most once per (license, usage type)
per 7 days.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.utils import timezone

from yesgoddess.notifications.fanout import claimed_batches, deliver_rows, release
from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import build_email

from .models import IN_FORCE, LicenseUsageDailyAggregate, LicenseUsageForecast
from .usage import TYPE_COLUMNS, raise_if_batches_failed, utc_today
from .usage_thresholds import ThresholdState, license_batches, load_thresholds, usage_url

log = logging.getLogger(__name__)

HISTORY_DAYS = 30
FORECAST_METHOD = "LINEAR_REGRESSION"
BREACH_ALERT_DAYS = 7  # alert when the breach is forecast within this many days
BREACH_ALERT_MIN_PROBABILITY = Decimal("0.70")
BREACH_ALERT_EVERY = timedelta(days=7)  # at most one alert per (license, usage type) in this time


# --- forecasts --------------------------------------------------------------------------


@dataclass
class Projection:
    slope: float
    intercept: float
    remainder: float  # projected usage from now to the end of the period
    predicted: int
    lower: int
    upper: int
    breach_date: date | None
    breach_probability: Decimal | None


def least_squares(values: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) of the ordinary least-squares line through (i, values[i])."""
    n = len(values)
    if n == 0:
        return 0.0, 0.0
    if n == 1:
        return 0.0, float(values[0])
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    sxx = sum((i - mean_x) ** 2 for i in range(n))
    sxy = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(values))
    slope = sxy / sxx
    return slope, mean_y - slope * mean_x


def breach_probability(usage_so_far: int, lower: int, predicted: int, upper: int, limit: int) -> Decimal | None:
    """A simple, documented rule (not a statistical probability):
    0.95 when the limit is already exceeded or even the low estimate exceeds it,
    0.80 when the central forecast exceeds it, 0.30 when only the high estimate does,
    otherwise None (no breach in sight)."""
    if usage_so_far > limit or lower > limit:
        return Decimal("0.95")
    if predicted > limit:
        return Decimal("0.80")
    if upper > limit:
        return Decimal("0.30")
    return None


def project_usage(
    history: Sequence[int], *, today_so_far: int, usage_so_far: int, today: date, period_end: date, limit: int
) -> Projection:
    """Forecast the usage of a period.

    `history` is the usage of each full day before today (oldest first, missing days
    zero-filled, at most 30 days, none before the license started); `usage_so_far` is the
    period's usage up to now, `today_so_far` the part of it made today. The least-squares
    line over day index i (0 = oldest day; today is index n) gives the daily values
    ahead, never below zero. Today counts only what the line expects beyond what today
    already has. The remainder (rest of today to the period's last day) is added to the
    usage so far; the bounds are -20 % / +20 % of that remainder. The breach date is the
    first day the projected cumulative usage exceeds the limit (today when it already
    does; None when it does not within the period).
    """
    slope, intercept = least_squares(history)
    n = len(history)

    def daily(index: int) -> float:
        return max(0.0, intercept + slope * index)

    days_after_today = max(0, (period_end - today).days)
    projected = [max(0.0, daily(n) - today_so_far)] + [daily(n + k) for k in range(1, days_after_today + 1)]
    remainder = sum(projected)
    exact = Decimal(str(round(remainder, 6)))  # no float noise in the bounds (1.2 * 835 = 1002)
    predicted = usage_so_far + int(exact.to_integral_value(ROUND_HALF_UP))
    lower = usage_so_far + math.floor(exact * Decimal("0.8"))
    upper = usage_so_far + math.ceil(exact * Decimal("1.2"))
    breach_date = None
    if usage_so_far > limit:
        breach_date = today
    else:
        cumulative = float(usage_so_far)
        for offset, value in enumerate(projected):
            cumulative += value
            if cumulative > limit:
                breach_date = today + timedelta(days=offset)
                break
    return Projection(
        slope=slope,
        intercept=intercept,
        remainder=remainder,
        predicted=predicted,
        lower=lower,
        upper=upper,
        breach_date=breach_date,
        breach_probability=breach_probability(usage_so_far, lower, predicted, upper, limit),
    )


def _history_rows(license_ids: Sequence[int], first_day: date, today: date) -> dict[int, dict[date, dict[str, int]]]:
    columns = [*TYPE_COLUMNS.values(), "total_quantity"]
    rows = LicenseUsageDailyAggregate.objects.filter(
        license_id__in=license_ids, date__gte=first_day, date__lte=today
    ).values_list("license_id", "date", *columns)
    by_license: dict[int, dict[date, dict[str, int]]] = defaultdict(dict)
    for license_id, day, *values in rows:
        by_license[license_id][day] = dict(zip(columns, values, strict=True))
    return by_license


def _column(usage_type: str) -> str:
    return TYPE_COLUMNS.get(usage_type, "total_quantity")


def forecast_batch(states: list[ThresholdState], today: date, now: datetime) -> int:
    """Upsert today's forecast rows for one batch of thresholds (2 queries)."""
    if not states:
        return 0
    history_start = today - timedelta(days=HISTORY_DAYS)
    days = _history_rows(sorted({s.license_id for s in states}), history_start, today)
    chosen: dict[tuple[int, str], tuple[tuple, LicenseUsageForecast]] = {}
    for state in states:
        per_day = days.get(state.license_id, {})
        column = _column(state.usage_type)
        first = max(history_start, state.license_start)
        history = [per_day.get(first + timedelta(days=i), {}).get(column, 0) for i in range((today - first).days)]
        projection = project_usage(
            history,
            today_so_far=per_day.get(today, {}).get(column, 0),
            usage_so_far=state.usage,
            today=today,
            period_end=state.period_end,
            limit=state.limit,
        )
        row = LicenseUsageForecast(
            license_id=state.license_id,
            threshold_id=state.id,
            usage_type=state.usage_type,
            forecast_date=today,
            period_start=state.period_start,
            period_end=state.period_end,
            predicted_quantity=projection.predicted,
            lower_bound=projection.lower,
            upper_bound=projection.upper,
            predicted_breach_date=projection.breach_date,
            breach_probability=projection.breach_probability,
            forecasting_method=FORECAST_METHOD,
            historical_days_used=len(history),
            calculated_at=now,
            metadata={
                "slope": round(projection.slope, 4),
                "intercept": round(projection.intercept, 4),
                "usage_so_far": state.usage,
                "projected_remainder": round(projection.remainder, 2),
                "limit": state.limit,
                "period_type": state.period_type,
            },
        )
        # One row per (license, usage type, day): of two thresholds on one usage type
        # (say a daily and a monthly view limit) keep the more urgent forecast.
        urgency = (projection.breach_date or date.max, -projection.predicted / state.limit)
        key = (state.license_id, state.usage_type)
        if key not in chosen or urgency < chosen[key][0]:
            chosen[key] = (urgency, row)
    rows = [row for _, row in chosen.values()]
    LicenseUsageForecast.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["license", "usage_type", "forecast_date"],
        update_fields=[
            "threshold",
            "period_start",
            "period_end",
            "predicted_quantity",
            "lower_bound",
            "upper_bound",
            "predicted_breach_date",
            "breach_probability",
            "forecasting_method",
            "historical_days_used",
            "calculated_at",
            "metadata",
        ],
    )
    return len(rows)


# --- breach alerts ----------------------------------------------------------------------

CLAIM_BREACH_ALERTS_SQL = """
UPDATE license_usage_forecasts f SET breach_alert_sent_at = %(now)s
WHERE f.id = ANY(%(ids)s) AND f.breach_alert_sent_at IS NULL
  AND NOT EXISTS (
    SELECT 1 FROM license_usage_forecasts p
    WHERE p.license_id = f.license_id AND p.usage_type = f.usage_type AND p.id <> f.id
      AND p.breach_alert_sent_at > %(since)s
  )
RETURNING f.id
"""


def breach_alert_candidates(today: date) -> Any:
    return (
        LicenseUsageForecast.objects.filter(
            forecast_date=today,
            predicted_breach_date__isnull=False,
            predicted_breach_date__lte=today + timedelta(days=BREACH_ALERT_DAYS),
            breach_probability__gte=BREACH_ALERT_MIN_PROBABILITY,
            breach_alert_sent_at__isnull=True,
            license__status__in=IN_FORCE,
            license__usage_tracking_enabled=True,
            license__deleted_at__isnull=True,
        )
        .select_related("license__brand__user", "license__ip_asset")
        .order_by("predicted_breach_date", "id")
    )


def breach_message(forecast: LicenseUsageForecast) -> str:
    return (
        f"Usage for {forecast.license.ip_asset.title} is projected to exceed its {forecast.usage_type} limit "
        f"around {forecast.predicted_breach_date.isoformat()}"
    )


def breach_email(forecast: LicenseUsageForecast) -> EmailMessage:
    lic = forecast.license
    metadata = forecast.metadata or {}
    return build_email(
        "license_usage_breach_forecast",
        lic.brand.user.email,
        {
            "asset_title": lic.ip_asset.title,
            "brand_name": lic.brand.name,
            "usage_type": forecast.usage_type,
            "period_type": metadata.get("period_type", ""),
            "breach_date": forecast.predicted_breach_date,
            "predicted_quantity": forecast.predicted_quantity,
            "limit": metadata.get("limit"),
            "period_end": forecast.period_end,
            "url": f"{settings.APP_URL}{usage_url(forecast.license_id)}",
        },
    )


def breach_notification(forecast: LicenseUsageForecast) -> Notification:
    return Notification(
        user_id=forecast.license.brand.user_id,
        type=Notification.Type.LICENSE,
        priority=Notification.Priority.HIGH,
        title="Usage Limit Forecast",
        message=breach_message(forecast),
        action_url=usage_url(forecast.license_id),
        metadata={
            "license_id": forecast.license_id,
            "forecast_id": forecast.pk,
            "usage_type": forecast.usage_type,
            "predicted_breach_date": forecast.predicted_breach_date.isoformat(),
        },
    )


def generate_forecasts(now: datetime | None = None) -> dict[str, int]:
    """Upsert today's forecast per (license, usage type) of every eligible license, batch
    by batch; a failed batch is logged and the others still run, then
    UsageBatchesFailed is raised."""
    now = now or timezone.now()
    today = utc_today(now)
    counts = {"licenses": 0, "thresholds": 0, "generated": 0, "errors": 0}
    for license_ids in license_batches(now):
        try:
            states = load_thresholds(license_ids, today)
            counts["generated"] += forecast_batch(states, today, now)
        except Exception:
            log.exception("usage forecasts: batch of licenses %s..%s failed", license_ids[0], license_ids[-1])
            counts["errors"] += 1
            continue
        counts["licenses"] += len(license_ids)
        counts["thresholds"] += len(states)
    return raise_if_batches_failed("forecasts", counts)


def send_breach_alerts(now: datetime | None = None) -> dict[str, int]:
    """Alert the brands of today's forecast breaches, in claimed batches of
    EMAIL_BATCH_SIZE forecasts (`yesgoddess.notifications.fanout`).

    The claim (a conditional UPDATE of `breach_alert_sent_at`, committed before the send)
    takes a forecast only if no other forecast of its (license, usage type) was alerted
    in the last 7 days; a concurrent run skips the claimed rows. A brand user without an
    address gets the in-app alert with the claim. The others are emailed; the in-app
    alert follows a sent email. A refused or never-attempted email releases the claim
    (the next run tries again); one interrupted mid-send keeps it. The delivery error
    is then re-raised so that the job retries.
    """
    now = now or timezone.now()
    counts = {"candidates": 0, "alerts": 0, "emails_sent": 0, "emails_refused": 0}

    def claim(rows: list[LicenseUsageForecast]) -> list[LicenseUsageForecast]:
        counts["candidates"] += len(rows)
        by_id = {f.pk: f for f in rows}
        with connection.cursor() as cursor:
            cursor.execute(CLAIM_BREACH_ALERTS_SQL, {"now": now, "ids": list(by_id), "since": now - BREACH_ALERT_EVERY})
            claimed = [by_id[pk] for (pk,) in cursor.fetchall()]
        no_address = [f for f in claimed if not f.license.brand.user.email]
        Notification.objects.bulk_create(map(breach_notification, no_address))
        counts["alerts"] += len(no_address)
        return [f for f in claimed if f.license.brand.user.email]

    for batch in claimed_batches(breach_alert_candidates(utc_today(now)), claim):
        delivery = deliver_rows(batch, lambda forecast: [breach_email(forecast)])
        with transaction.atomic():
            release(delivery.to_retry, "breach_alert_sent_at")
            Notification.objects.bulk_create(map(breach_notification, delivery.sent))
        counts["alerts"] += len(delivery.sent)
        counts["emails_sent"] += len(delivery.sent)
        counts["emails_refused"] += len(delivery.refused)
        delivery.raise_error()
    return counts
