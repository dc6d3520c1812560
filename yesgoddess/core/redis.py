"""The process's Redis client: one place for the domain and the job framework alike."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from redis import Redis


@cache
def redis_connection() -> Redis:
    """The process's Redis client, made on first use (importing opens nothing).

    redis-py's pool notices a fork and opens fresh sockets in the child."""
    return Redis.from_url(settings.REDIS_URL)
