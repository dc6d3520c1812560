"""Exceptions a job raises to tell the runtime how a failure should be treated."""


class JobInputError(Exception):
    """The job was given something it can never work with (a missing id, a bad value).

    Retrying cannot help, so the runtime fails the job once, with this message, and skips
    the remaining retries: no retry storm for a row that does not exist.
    """
