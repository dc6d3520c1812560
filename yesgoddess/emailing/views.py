"""Unsubscribe without logging in: GET shows a confirmation page, POST unsubscribes.

Mail clients that honour `List-Unsubscribe-Post: List-Unsubscribe=One-Click` POST to the
same URL (RFC 8058); so does the page's button. A bad or tampered token is a 400.
"""

from __future__ import annotations

from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from .models import EmailCategory
from .services import opt_out, read_unsubscribe_token


@csrf_exempt  # one-click unsubscribe comes from mail providers, without a session or CSRF token
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    try:
        email, category = read_unsubscribe_token(token)
    except signing.BadSignature:
        return render(request, "emailing/unsubscribe.html", {"state": "invalid"}, status=400)
    context = {"category": EmailCategory(category).label, "token": token}
    if request.method == "POST":
        opt_out(email, category)
        return render(request, "emailing/unsubscribe.html", context | {"state": "done"})
    return render(request, "emailing/unsubscribe.html", context | {"state": "confirm"})
