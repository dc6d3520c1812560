"""Running the external media tools (ffmpeg, ffprobe, poppler) with a time limit.

A tool that reads the file and refuses it becomes a MediaError that keeps the tail of the
tool's stderr: that tail is what tells an operator why a file was refused. A tool that is
missing, runs out of time or is killed from outside is the machine's fault, not the file's:
that becomes a MachineFault, which callers retry and never turn into a rejection (a busy
machine must not destroy a valid upload).
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .errors import MachineFault, MediaError

STDERR_TAIL_CHARS = 500
# Signals only something outside the tool sends (the OOM killer, a shutdown, an operator):
# a decoder that crashes on a hostile file dies of SIGSEGV/SIGABRT instead, and that file
# is refused like any other it cannot read.
OUTSIDE_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


def stderr_tail(stderr: bytes | str | None, limit: int = STDERR_TAIL_CHARS) -> str:
    """The last `limit` characters of a tool's stderr, decoded and trimmed."""
    if not stderr:
        return "(no error output)"
    text = stderr.decode("utf-8", errors="replace") if isinstance(stderr, bytes) else stderr
    text = text.strip()
    return text[-limit:] if text else "(no error output)"


def tool_path_arg(path: str | Path) -> str:
    """An absolute path, so a file called "-x.pdf" can never be read as a command-line option."""
    return str(Path(path).resolve())


def run_tool(args: Sequence[str], *, timeout: float, failure: str) -> bytes:
    """Run a tool and return its stdout; raise MediaError("<failure>: <stderr tail>") when the
    tool refuses the file, MachineFault when it is missing, times out or is killed from outside.

    `failure` is the human sentence that starts the error, e.g. "ffprobe could not read the file".
    stdin is closed so a tool never waits for a terminal.
    """
    tool = Path(args[0]).name
    try:
        result = subprocess.run(
            list(args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise MachineFault(f"{tool} is not installed on this machine") from exc
    except subprocess.TimeoutExpired as exc:
        raise MachineFault(f"{tool} timed out after {timeout:g} s (the machine may be busy)") from exc
    if -result.returncode in OUTSIDE_SIGNALS:
        raise MachineFault(f"{tool} was killed by {signal.Signals(-result.returncode).name} before it finished")
    if result.returncode != 0:
        raise MediaError(f"{failure}: {stderr_tail(result.stderr)}")
    return result.stdout


def ensure_not_empty(path: str | Path) -> None:
    """Refuse a missing or zero-byte file before any decoder sees it (their errors are cryptic)."""
    try:
        size = Path(path).stat().st_size
    except FileNotFoundError as exc:
        raise MediaError(f"The file does not exist: {path}") from exc
    if size == 0:
        raise MediaError("The file is empty")
