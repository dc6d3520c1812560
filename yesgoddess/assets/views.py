"""Asset API: upload, read, rescan, regenerate, soft delete. Owner or staff only;
anyone else gets 404, as if the asset did not exist."""

from __future__ import annotations

import mimetypes

from django.core.files.storage import default_storage
from django.db import transaction
from django.http import FileResponse, HttpRequest, JsonResponse
from django.utils import timezone

from jobs.api import enqueue
from yesgoddess.core.api import ApiError, api_view, idempotent, json_body
from yesgoddess.media.watermark import POSITIONS
from yesgoddess.projects.models import Project

from . import reprocessing
from .models import AssetStatus, IpAsset, ScanStatus
from .services import UploadRejected, accept_upload, asset_json, audit


def _own_asset(request: HttpRequest, asset_id: int) -> IpAsset:
    asset = IpAsset.objects.filter(pk=asset_id, deleted_at__isnull=True).first()
    if asset is None or not (request.user.is_staff or asset.created_by_id == request.user.pk):
        raise ApiError(404, "Asset not found.")
    return asset


def _project_for(request: HttpRequest, raw: str | None) -> Project | None:
    if not raw:
        return None
    try:
        project = Project.objects.select_related("brand").filter(pk=int(raw), deleted_at__isnull=True).first()
    except ValueError:
        raise ApiError(400, "project_id must be an integer.") from None
    if project is None or not (request.user.is_staff or project.brand.user_id == request.user.pk):
        raise ApiError(404, "Project not found.")
    return project


@api_view(("POST",))
@idempotent("asset")
def upload_asset(request: HttpRequest) -> JsonResponse:
    upload = request.FILES.get("file")
    if upload is None:
        raise ApiError(400, "Send the file as multipart field 'file'.")
    title = (request.POST.get("title") or "").strip()
    if not title:
        raise ApiError(400, "A title is required.")
    if len(title) > 255:
        raise ApiError(400, "The title is longer than 255 characters.")
    project = _project_for(request, request.POST.get("project_id"))
    try:
        asset = accept_upload(
            user=request.user, upload=upload, title=title, description=request.POST.get("description"), project=project
        )
    except UploadRejected as exc:
        raise ApiError(400, str(exc)) from None
    return JsonResponse(asset_json(asset), status=202)


@api_view(("GET", "DELETE"))
def asset_detail(request: HttpRequest, asset_id: int) -> JsonResponse:
    asset = _own_asset(request, asset_id)
    if request.method == "DELETE":
        with transaction.atomic():
            IpAsset.objects.filter(pk=asset.pk).update(deleted_at=timezone.now(), updated_by=request.user)
            audit(asset, "ASSET_DELETED", asset.status, asset.status, actor=request.user)
        asset.refresh_from_db()
    return JsonResponse(asset_json(asset))


@api_view(("POST",))
@idempotent("asset")
def rescan_asset(request: HttpRequest, asset_id: int) -> JsonResponse:
    asset = _own_asset(request, asset_id)
    try:
        job_id = reprocessing.request_rescan(asset, actor=request.user)
    except reprocessing.RequestRefused as exc:
        raise ApiError(exc.status, str(exc)) from None
    asset.refresh_from_db()
    return JsonResponse({**asset_json(asset), "job_id": job_id}, status=202)


@api_view(("POST",))
@idempotent("asset")
def regenerate_asset(request: HttpRequest, asset_id: int) -> JsonResponse:
    asset = _own_asset(request, asset_id)
    steps = json_body(request).get("steps") or list(reprocessing.REGENERATABLE)
    if not isinstance(steps, list):
        raise ApiError(400, f"steps must be a list drawn from {', '.join(reprocessing.REGENERATABLE)}.")
    try:
        job_ids = reprocessing.request_regeneration(asset, steps)
    except reprocessing.RequestRefused as exc:
        raise ApiError(exc.status, str(exc)) from None
    return JsonResponse({"id": asset.pk, "jobs": job_ids}, status=202)


def _watermark_options(body: dict, request: HttpRequest) -> dict:
    text, logo = body.get("text"), body.get("logo_asset_id")
    position = body.get("position", "bottom-right")
    opacity, scale = body.get("opacity", 0.5), body.get("scale", 0.2)
    forensic = body.get("forensic", False)
    if text is not None and (not isinstance(text, str) or not text.strip() or len(text) > 200):
        raise ApiError(400, "text must be a non-empty string of at most 200 characters.")
    if logo is not None and not isinstance(logo, int):
        raise ApiError(400, "logo_asset_id must be an asset id.")
    if position not in POSITIONS:
        raise ApiError(400, f"position must be one of {', '.join(POSITIONS)}.")
    if not isinstance(opacity, (int, float)) or not 0 < opacity <= 1:
        raise ApiError(400, "opacity must be a number above 0 and at most 1.")
    if not isinstance(scale, (int, float)) or not 0 < scale <= 1:
        raise ApiError(400, "scale must be a number above 0 and at most 1.")
    if not isinstance(forensic, bool):
        raise ApiError(400, "forensic must be true or false.")
    if text is None and logo is None and not forensic:
        raise ApiError(400, "Give text, a logo_asset_id, or forensic: true.")
    if logo is not None:
        logo_asset = _own_asset(request, logo)
        if logo_asset.type != "IMAGE" or logo_asset.scan_status != ScanStatus.CLEAN:
            raise ApiError(400, "The logo must be a clean image asset.")
    return {
        "text": text,
        "logo_asset_id": logo,
        "position": position,
        "opacity": float(opacity),
        "scale": float(scale),
        "forensic": forensic,
        "user_id": request.user.pk if forensic else None,
        # The time signed into the forensic id: fixed here, so a retried job makes the
        # same copy and the same issuance record.
        "issued_at": timezone.now().isoformat() if forensic else None,
    }


@api_view(("POST",))
@idempotent("asset")
def watermark_asset(request: HttpRequest, asset_id: int) -> JsonResponse:
    asset = _own_asset(request, asset_id)
    if asset.type not in ("IMAGE", "VIDEO"):
        raise ApiError(400, f"Watermarks are for images and videos, not {asset.type}.")
    if asset.scan_status != ScanStatus.CLEAN or asset.status == AssetStatus.REJECTED:
        raise ApiError(409, f"The asset is not ready (status {asset.status}, scan {asset.scan_status}).")
    options = _watermark_options(json_body(request), request)
    job_id = enqueue("asset-watermarking", asset_id=asset.pk, **options)
    return JsonResponse({"id": asset.pk, "job_id": job_id}, status=202)


def _asset_for_key(key: str) -> IpAsset | None:
    parts = key.split("/")
    if parts[0] == "derivatives" and len(parts) > 2 and parts[1].isdigit():
        return IpAsset.objects.filter(pk=int(parts[1])).first()
    if parts[0] == "quarantine":
        return IpAsset.objects.filter(quarantine_key=key).first()
    return IpAsset.objects.filter(storage_key=key).first()


@api_view(("GET",))
def stored_file(request: HttpRequest, key: str) -> FileResponse:
    """A stored file of an asset (what `default_storage.url()` points at for local
    storage), for the asset's owner or staff; quarantined files for staff only."""
    asset = _asset_for_key(key)
    allowed = (
        asset is not None
        and asset.deleted_at is None
        and (request.user.is_staff or (asset.created_by_id == request.user.pk and not key.startswith("quarantine/")))
    )
    if not allowed or not default_storage.exists(key):
        raise ApiError(404, "File not found.")
    content_type, _ = mimetypes.guess_type(key)
    return FileResponse(default_storage.open(key, "rb"), content_type=content_type or "application/octet-stream")
