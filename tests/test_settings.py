"""Settings fail at start, naming the variable, on a bad value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import ROOT, worker_env

LOAD = "import django; django.setup(); print('ok')"


def start_with(**env: str) -> subprocess.CompletedProcess:
    environment = worker_env()
    environment.update(env)
    environment["DJANGO_SETTINGS_MODULE"] = "yesgoddess.settings"
    return subprocess.run([sys.executable, "-c", LOAD], cwd=ROOT, env=environment, capture_output=True, text=True)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REDIS_URL", "localhost:6379"),
        ("DATABASE_URL", "mysql://root@localhost/x"),
        ("DB_CONN_MAX_AGE", "soon"),
        ("EMAIL_PORT", "twenty-five"),
        ("EMAIL_USE_TLS", "maybe"),
        ("RQ_WORKER_TTL", "5"),
        ("UPLOAD_MAX_BYTES", "0"),
        ("LOG_LEVEL", "LOUD"),
        ("LOG_FORMAT", "xml"),
        ("REDIS_SENTINELS", "sentinel-without-port"),
        ("REDIS_SSL_CERT_REQS", "maybe"),
    ],
)
def test_a_bad_value_fails_at_start_naming_the_variable(variable, value):
    result = start_with(**{variable: value})
    assert result.returncode != 0
    assert f"Environment variable {variable}=" in result.stderr


def test_secret_key_is_required_unless_debug():
    result = start_with(DEBUG="0", SECRET_KEY="")
    assert result.returncode != 0
    assert "SECRET_KEY is required" in result.stderr
    assert start_with(DEBUG="0", SECRET_KEY="s3cret").stdout.strip() == "ok"


def test_defaults_work_on_this_machine():
    assert start_with().stdout.strip() == "ok"
