"""Personal data of the licensing app (`yesgoddess.core.privacy` says what each declaration
means). A licence names its parties by id (brand, asset, accepting user): it keeps
nothing about a person itself."""

from __future__ import annotations

from yesgoddess.core.privacy import expires, not_personal

DECLARATIONS = [
    not_personal("licensing.License", ("billing_frequency", "payment_terms"), "contract terms"),
    not_personal(
        "licensing.LicenseStatusHistory", ("reason",), "why a licence changed state (system or staff wording)"
    ),
    expires(
        "licensing.LicenseUsageEvent",
        ("geographic_location", "device_type", "referrer", "session_id"),
        "the audience of a licensed work, not an account: license-usage-tracking.cleanup deletes raw "
        "events after USAGE_EVENT_RETENTION_DAYS (the daily aggregates keep counts only)",
    ),
]
