from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

DATABASE_DIR = settings.BASE_DIR / "deploy" / "clamav" / "db"


def render_clamd_config() -> str:
    """clamd.conf from settings: the socket the scanner dials, and a StreamMaxLength of
    at least the upload limit (clamd refuses larger INSTREAM uploads otherwise)."""
    run_dir = Path(settings.CLAMD_SOCKET).parent
    return "\n".join(
        [
            f"LocalSocket {settings.CLAMD_SOCKET}",
            "LocalSocketMode 660",
            f"PidFile {run_dir / 'clamd.pid'}",
            f"DatabaseDirectory {DATABASE_DIR}",
            f"LogFile {run_dir / 'clamd.log'}",
            "LogTime yes",
            "Foreground no",
            "User root",
            f"StreamMaxLength {settings.CLAMD_STREAM_MAX_LENGTH}",
            f"MaxFileSize {settings.CLAMD_STREAM_MAX_LENGTH}",
            f"MaxScanSize {settings.CLAMD_STREAM_MAX_LENGTH * 4}",
            "ScanArchive yes",
            "MaxThreads 4",
            "",
        ]
    )


class Command(BaseCommand):
    help = "Write the clamd configuration derived from settings to the given path."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path")

    def handle(self, *args, path: str, **options) -> None:
        Path(settings.CLAMD_SOCKET).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(render_clamd_config())
        self.stdout.write(path)
