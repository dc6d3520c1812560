"""Pure media processing for asset jobs: type detection, thumbnails and metadata.

Functions here work on files on local disk and take every setting as a parameter; they know
nothing of Django models or storage. Bad input always raises media.errors.MediaError with a
human-readable reason.
"""
