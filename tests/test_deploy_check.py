"""`manage.py check --deploy` with production settings reports only what the README
explains (issue 23's closing condition)."""

from __future__ import annotations

import re
import secrets

from .conftest import ROOT, manage, worker_env

PRODUCTION = {"DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "api.yesgoddess.example"}


def test_check_deploy_reports_only_what_the_readme_explains():
    result = manage("check", "--deploy", env={**worker_env(), **PRODUCTION})
    reported = set(re.findall(r"\(([a-z_]+\.[WE]\d{3})\)", result.stdout + result.stderr))
    readme = (ROOT / "README.md").read_text()
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert "System check identified" in result.stdout + result.stderr, result.stderr[-2000:]
    assert sorted(i for i in reported if f"`{i}`" not in readme or f"`{i}`" not in operations) == []
    assert result.returncode == 0  # warnings only, no error


def test_cookies_are_secure_without_debug():
    code = "from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)"
    production = manage("shell", "-c", code, env={**worker_env(), **PRODUCTION})
    development = manage("shell", "-c", code)
    assert production.stdout.split()[-2:] == ["True", "True"], production.stderr
    assert development.stdout.split()[-2:] == ["False", "False"], development.stderr
