"""license-usage-tracking (spec B §5.5): five scheduled jobs, one call each into
`yesgoddess.licensing` (see `yesgoddess.licensing.usage` for what each one does).
"""

from __future__ import annotations

from yesgoddess.licensing import usage_aggregation, usage_events, usage_forecasts, usage_thresholds


def aggregate_usage() -> dict[str, int]:
    """license-usage-tracking.aggregate: re-aggregate the window's days and move the
    licenses' usage counters."""
    return usage_aggregation.aggregate_daily_usage()


def check_usage_thresholds() -> dict[str, int]:
    """license-usage-tracking.thresholds: warnings and overages for every eligible license."""
    return usage_thresholds.check_all_thresholds()


def generate_usage_forecasts() -> dict[str, int]:
    """license-usage-tracking.forecasts: today's forecast per (license, usage type)."""
    return usage_forecasts.generate_forecasts()


def send_forecast_breach_alerts() -> dict[str, int]:
    """license-usage-tracking.breach-alerts: alert brands of forecast limit breaches."""
    return usage_forecasts.send_breach_alerts()


def purge_usage_events() -> dict[str, int]:
    """license-usage-tracking.cleanup: delete raw usage events past their retention."""
    return usage_events.purge_old_events()
