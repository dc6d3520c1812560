"""Project API: status changes. The brand's account or staff only; anyone else gets
404, as if the project did not exist."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from yesgoddess.core.api import ApiError, api_view, idempotent, json_body

from .models import Project
from .services import InvalidProjectTransition, UnknownProjectStatus, change_status, project_json


@api_view(("POST",))
@idempotent("project")
def change_project_status(request: HttpRequest, project_id: int) -> JsonResponse:
    """POST {"status": "ACTIVE"}: 200 with the project (and `job_id` of the creator
    matching when it became ACTIVE); 400 unknown status, 409 a move it cannot make."""
    project = Project.objects.select_related("brand").filter(pk=project_id, deleted_at__isnull=True).first()
    if project is None or not (request.user.is_staff or project.brand.user_id == request.user.pk):
        raise ApiError(404, "Project not found.")
    status = json_body(request).get("status")
    if not isinstance(status, str) or not status:
        raise ApiError(400, 'Send the new status as {"status": ...}.')
    status = status.upper()
    try:
        job_id = change_status(project, status, actor=request.user)
    except UnknownProjectStatus as exc:
        raise ApiError(400, str(exc)) from None
    except InvalidProjectTransition as exc:
        raise ApiError(409, str(exc)) from None
    return JsonResponse(project_json(project, job_id=job_id))
