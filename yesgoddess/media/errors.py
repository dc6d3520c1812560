"""The single exception type of the media package."""

from __future__ import annotations


class MediaError(Exception):
    """A file could not be processed; the message is a human-readable reason.

    Callers store the message on the asset (thumbnail error, rejection reason), so it must
    make sense to a person without a stack trace.
    """
