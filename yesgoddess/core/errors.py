"""Errors shared by every layer."""


class InvalidInput(ValueError):
    """Work that can never succeed with what it was given: a missing id, a malformed value,
    data that a retry cannot fix. Domain code raises it (or a subclass) with a message a
    person can act on; the job runtime fails such a job once, without retries (no retry
    storm for a row that does not exist)."""
