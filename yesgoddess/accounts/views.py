"""POST /api/auth/login: JSON login into a Django session."""

from __future__ import annotations

import json

from django.contrib.auth import authenticate, login
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .auth import AccountLocked


@csrf_exempt
@require_POST
def login_view(request: HttpRequest) -> JsonResponse:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return JsonResponse({"error": "The request body is not valid JSON."}, status=400)
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not isinstance(password, str) or not email or not password:
        return JsonResponse({"error": "Send {'email': ..., 'password': ...}."}, status=400)
    try:
        user = authenticate(request, email=email, password=password)
    except AccountLocked as locked:
        return JsonResponse({"error": locked.messages[0], "locked_until": locked.locked_until.isoformat()}, status=423)
    if user is None:
        return JsonResponse({"error": "Invalid email or password."}, status=401)
    login(request, user)
    return JsonResponse({"id": user.pk, "username": user.get_username()})
