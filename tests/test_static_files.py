"""Static files (issue 22, point 1): the admin's stylesheets are served by the app itself
(WhiteNoise, from STATIC_ROOT) in every mode the README runs: through Django's test client,
and through a real gunicorn without DEBUG, as deployed (hashed names, far-future caching,
gzip). The release step and `make run` collect them."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client

from .conftest import ROOT, manage, worker_env

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_release_step_and_make_run_collect_static_files():
    release = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("release:"))
    assert "collectstatic --no-input" in release
    run = (ROOT / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "collectstatic --no-input" in run


def test_collected_admin_css_is_served_by_the_app(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "static"
    settings.STATIC_ROOT.mkdir()
    # Nothing collected: nothing served (it is STATIC_ROOT that is served, not the sources).
    assert Client().get("/static/admin/css/base.css").status_code == 404
    call_command("collectstatic", interactive=False, verbosity=0)
    response = Client().get("/static/admin/css/base.css")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    assert b"#header" in b"".join(response.streaming_content)
    assert Client().get("/static/admin/css/no-such.css").status_code == 404


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@contextlib.contextmanager
def gunicorn(env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "yesgoddess.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                fetch(f"{base}/admin/login/")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"gunicorn did not start:\n{process.communicate()[0][-3000:]}") from None
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@pytest.mark.slow
def test_gunicorn_without_debug_serves_the_admin_stylesheet(tmp_path: Path):
    static_root = tmp_path / "static"
    env = {**worker_env(), "DEBUG": "0", "SECRET_KEY": "test-" + "x" * 50, "STATIC_ROOT": str(static_root)}
    collected = manage("collectstatic", "--no-input", "-v", "0", env=env)
    assert collected.returncode == 0, collected.stderr
    with gunicorn(env) as base:
        status, _, body = fetch(f"{base}/admin/login/")
        assert status == 200
        # The page links the hashed name; that file is served for good (far-future, immutable).
        href = re.search(rb'<link rel="stylesheet" href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', body)
        assert href, body[:2000]
        status, headers, css = fetch(base + href.group(1).decode())
        assert status == 200 and headers["Content-Type"].startswith("text/css") and b"#header" in css
        assert "immutable" in headers["Cache-Control"]
        status, headers, _ = fetch(base + href.group(1).decode(), {"Accept-Encoding": "gzip"})
        assert status == 200 and headers.get("Content-Encoding") == "gzip"
        # The plain name, which the issue found answering 404, is served too.
        status, headers, css = fetch(f"{base}/static/admin/css/base.css")
        assert status == 200 and headers["Content-Type"].startswith("text/css") and b"#header" in css
        assert fetch(f"{base}/static/admin/css/no-such.css")[0] == 404
