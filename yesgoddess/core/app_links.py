"""Links into the web app (APP_URL) and the API endpoint each linked page reads.

An email links to a page of the web app, not to this API; each such page shows what one
endpoint of this API answers. `PAGES` is that contract: `app_path`/`app_url` build a
link from it (so a message cannot link to a page that is not listed), and
`api_path_for` turns a link back into the API path its page reads (so a test can follow
every link of a rendered message and check that it works for the recipient).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLResolver, path, reverse
from django.urls.exceptions import Resolver404
from django.urls.resolvers import RegexPattern

# page name: (route in the web app, URL name of the API endpoint the page reads)
PAGES: dict[str, tuple[str, str]] = {
    "license": ("licenses/<int:license_id>", "api-license-detail"),
    "license-renewal": ("licenses/<int:license_id>/renewal", "api-license-renewal"),
    "license-renewal-offer": ("licenses/<int:license_id>/renewal/<int:offer_id>", "api-license-renewal-offer"),
    "license-usage": ("licenses/<int:license_id>/usage", "api-license-usage"),
    "license-usage-overages": ("licenses/<int:license_id>/usage/overages", "api-license-usage-overages"),
    "notifications": ("notifications", "api-notifications"),
    "notification-preferences": ("settings/notifications", "api-notification-preferences"),
}

_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")


def app_path(page: str, **params: Any) -> str:
    """The page's path in the web app ("/licenses/5/renewal"), as in-app action URLs use."""
    route, _ = PAGES[page]
    return "/" + _PARAMETER.sub(lambda m: str(params[m.group(1)]), route)


def app_url(page: str, **params: Any) -> str:
    """The page's absolute link, for emails."""
    return settings.APP_URL + app_path(page, **params)


def _page(request: HttpRequest, **kwargs: Any) -> HttpResponse:  # pragma: no cover - never served
    """The resolver below only matches app links; the pages themselves are the web app's."""
    raise Http404("app pages are served by the web app")


@cache
def _resolver() -> URLResolver:
    return URLResolver(RegexPattern(r"^/"), [path(route, _page, name=name) for name, (route, _) in PAGES.items()])


def api_path_for(url: str) -> str | None:
    """The API path read by the page `url` links to (an APP_URL link or an app path), or
    None when it is no page of `PAGES`."""
    if url.startswith(("http://", "https://")):
        if not url.startswith(settings.APP_URL + "/"):
            return None
        url = url[len(settings.APP_URL) :]
    try:
        match = _resolver().resolve(urlsplit(url).path)
    except Resolver404:
        return None
    return reverse(PAGES[match.url_name][1], kwargs=match.kwargs)
