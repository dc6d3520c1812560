"""Watermark issuances become append-only in the database itself, and uploads the old
pipeline rejected for a tool timeout (a busy machine, not a bad file: issue 21, item 2)
get a retryable processing error instead of a rejection, so upload-cleanup never purges
them and a regenerate can finish them."""

from __future__ import annotations

from django.db import migrations

APPEND_ONLY = """
CREATE FUNCTION watermark_issuances_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'watermark_issuances is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER watermark_issuances_append_only BEFORE UPDATE OR DELETE ON watermark_issuances
    FOR EACH ROW EXECUTE FUNCTION watermark_issuances_append_only();
"""
DROP_APPEND_ONLY = """
DROP TRIGGER IF EXISTS watermark_issuances_append_only ON watermark_issuances;
DROP FUNCTION IF EXISTS watermark_issuances_append_only();
"""

# What the old media code said when a tool or the whole step ran out of time
# (tools.run_tool, encoding.Deadline); both are MachineFault now.
TIMEOUT_PATTERN = r"timed out after [0-9.]+ s"


def unreject_timeouts(apps, schema_editor) -> None:
    IpAsset = apps.get_model("assets", "IpAsset")
    AuditEvent = apps.get_model("core", "AuditEvent")
    rejected = IpAsset.objects.filter(
        status="REJECTED",
        scan_status="CLEAN",
        deleted_at__isnull=True,
        pipeline_failed_at__isnull=False,
        rejection_reason__regex=TIMEOUT_PATTERN,
    )
    for asset in rejected.iterator():
        metadata = asset.metadata or {}
        # The step that rejected it is the one without a result (thumbnails first).
        step = "thumbnails" if "thumbnails" not in metadata else "extracted"
        asset.processing_error = {
            step: {
                "error": asset.rejection_reason,
                "since": asset.pipeline_failed_at.isoformat(),
                "at": asset.pipeline_failed_at.isoformat(),
                "attempts": 1,
                "final": True,
            }
        }
        asset.status = "PROCESSING"
        asset.rejection_reason = None
        asset.save(update_fields=["processing_error", "status", "rejection_reason"])
        AuditEvent.objects.create(
            action="ASSET_UNREJECTED_TIMEOUT",
            entity_type="asset",
            entity_id=str(asset.pk),
            before={"status": "REJECTED"},
            after={"status": "PROCESSING", "step": step},
        )


class Migration(migrations.Migration):
    dependencies = [
        ("assets", "0005_asset_faults_watermark_issuances_trend_bigint"),
        ("core", "0002_auditevent"),
    ]

    operations = [
        migrations.RunSQL(APPEND_ONLY, DROP_APPEND_ONLY),
        migrations.RunPython(unreject_timeouts, migrations.RunPython.noop),
    ]
