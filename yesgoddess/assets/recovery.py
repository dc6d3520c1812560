"""`asset-virus-scan.sweep`: uploads whose scan failed on our side are rescanned by
themselves once clamd answers again (issue 21, item 1).

A scan that clamd never answered is retried by RQ for about a day (`jobs/registry.py`),
then left in scan ERROR, marked retryable. Every few minutes this sweep asks clamd for its
version; while clamd is down it does nothing, and once clamd answers it enqueues a scan for
every live asset in retryable scan ERROR (deduplicated per asset, like the upload's own
scan, so a scan still queued or waiting for a retry is not doubled). A refusal by clamd or
a file missing from storage is not retried here: retrying cannot change it, a person has to
look (admins were told).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db.models import QuerySet

from jobs.api import enqueue
from yesgoddess.core.batches import in_pk_batches

from . import scanner
from .models import IpAsset, ScanStatus

log = logging.getLogger(__name__)


def retryable_scan_errors() -> QuerySet:
    """Live assets whose scan failed for a reason a later scan can fix (rows from before
    the `retryable` mark count as retryable: they were outages)."""
    return IpAsset.objects.filter(scan_status=ScanStatus.ERROR, deleted_at__isnull=True).exclude(
        scan_result__contains={"retryable": False}
    )


def rescan_failed_scans() -> dict[str, int]:
    """Enqueue a scan of every retryable scan ERROR asset if clamd answers; else nothing."""
    if not scanner.is_answering(settings.CLAMD_SOCKET):
        waiting = retryable_scan_errors().count()
        log.warning("clamd is not answering; %s asset(s) wait for a rescan", waiting)
        return {"scanner_answering": 0, "rescans_requested": 0, "waiting": waiting}
    requested = 0
    for asset in in_pk_batches(retryable_scan_errors().only("pk")):
        enqueue("asset-virus-scan", asset_id=asset.pk, dedup_key=f"asset-{asset.pk}")
        requested += 1
    return {"scanner_answering": 1, "rescans_requested": requested, "waiting": 0}
