"""Exceptions a job raises to tell the runtime how a failure should be treated."""

from yesgoddess.core.errors import InvalidInput


class JobInputError(InvalidInput):
    """The job was given something it can never work with (a missing id, a bad value).

    Retrying cannot help, so the runtime fails the job once, with this message, and skips
    the remaining retries: no retry storm for a row that does not exist. Domain code
    raises `InvalidInput` (or a subclass) itself; the runtime reports it as this error, so
    a failed job's error line reads the same whichever layer refused the input.
    """
