"""Local file storage whose writes are atomic.

Django's FileSystemStorage streams into the final path, so a process killed mid-write
leaves a truncated file where a reader expects a whole one. This class writes a temp
file in the same directory and renames it into place. It overwrites by default, like
S3 storages do, so a job that runs twice rewrites the same keys instead of adding
`name_AbC123.jpg` copies.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any

from django.core.files.base import File
from django.core.files.storage import FileSystemStorage


class AtomicFileSystemStorage(FileSystemStorage):
    def __init__(self, *args: Any, allow_overwrite: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, allow_overwrite=allow_overwrite, **kwargs)

    def _save(self, name: str, content: File) -> str:
        while True:
            full_path = self.path(name)
            directory = os.path.dirname(full_path)
            os.makedirs(directory, exist_ok=True)
            fd, temp_path = tempfile.mkstemp(dir=directory, prefix=".partial-")
            try:
                with os.fdopen(fd, "wb") as out:
                    if hasattr(content, "seek"):
                        with contextlib.suppress(Exception):
                            content.seek(0)
                    for chunk in content.chunks():
                        out.write(chunk if isinstance(chunk, bytes) else chunk.encode())
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(temp_path, self.file_permissions_mode or 0o644)
                if self._allow_overwrite:
                    os.replace(temp_path, full_path)
                else:
                    try:
                        os.link(temp_path, full_path)  # fails if the name is taken
                    except FileExistsError:
                        name = self.get_available_name(name)
                        continue
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp_path)
            return os.path.relpath(full_path, self.location).replace("\\", "/")
