"""The services the tests and the system need are real and configured from settings."""

from __future__ import annotations

import io
import zipfile

import pyclamd
from django.conf import settings
from django.db import connection

from jobs.management.commands.clamd_config import render_clamd_config
from yesgoddess.core.redis import redis_connection

# Assembled at run time so that no file in the repository carries the test signature.
EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def clamd() -> pyclamd.ClamdUnixSocket:
    return pyclamd.ClamdUnixSocket(filename=settings.CLAMD_SOCKET)


def test_clamd_answers_on_the_configured_socket():
    assert clamd().ping() is True


def test_clamd_finds_the_test_signature_alone_and_inside_a_zip():
    assert clamd().scan_stream(EICAR.encode())["stream"][0] == "FOUND"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", EICAR)
    assert clamd().scan_stream(buffer.getvalue())["stream"][0] == "FOUND"
    assert clamd().scan_stream(b"just a harmless file") is None


def test_clamd_accepts_streams_up_to_the_upload_limit():
    config = render_clamd_config()
    assert f"StreamMaxLength {settings.CLAMD_STREAM_MAX_LENGTH}" in config
    assert settings.CLAMD_STREAM_MAX_LENGTH >= settings.UPLOAD_MAX_BYTES
    assert f"LocalSocket {settings.CLAMD_SOCKET}" in config


def test_postgres_and_redis_are_real(db):
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        assert int(cursor.fetchone()[0]) >= 140000  # TID range scans (jobs/sweeps.py) need 14+
    assert redis_connection().ping() is True
