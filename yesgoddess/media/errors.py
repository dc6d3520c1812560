"""The exception types of the media package: the file's fault, or the machine's."""

from __future__ import annotations


class MediaError(Exception):
    """A file could not be processed; the message is a human-readable reason.

    Callers store the message on the asset (thumbnail error, rejection reason), so it must
    make sense to a person without a stack trace.
    """


class MachineFault(Exception):
    """The machine, not the file, failed: a tool is missing, ran past its time limit or was
    killed from outside (out of memory, shutdown). Deliberately not a MediaError: the caller
    retries later and must never reject the upload for it. The message names the tool."""
