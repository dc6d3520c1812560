"""The process's Redis client: the one place every use of Redis gets its connection from.

Queues, workers, rq-scheduler and the django-rq panel (through `DjangoRQConnection`),
locks, rate limits, the send journal, the search pending set and analytics sessions all
call `redis_connection()`. It is built from settings:

- `REDIS_URL`: `redis://`, `rediss://` (TLS, with the `REDIS_SSL_*` certificate options)
  or `unix://`; its user, password and database number always apply.
- `REDIS_SENTINELS` + `REDIS_SENTINEL_MASTER`: the master's address is asked of the
  sentinels on every new connection (and again after a connection error or a READONLY
  answer), so a failover is followed without a restart; the host in `REDIS_URL` is then
  not used.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.conf import settings
from django.core.cache.backends.base import BaseCache
from redis import Redis
from redis.connection import parse_url
from redis.sentinel import Sentinel, SentinelManagedConnection, SentinelManagedSSLConnection


def tls_options() -> dict[str, Any]:
    """redis-py's TLS options from the REDIS_SSL_* settings (only those that are set)."""
    options: dict[str, Any] = {"ssl_cert_reqs": settings.REDIS_SSL_CERT_REQS}
    for option, value in (
        ("ssl_ca_certs", settings.REDIS_SSL_CA_CERTS),
        ("ssl_certfile", settings.REDIS_SSL_CERTFILE),
        ("ssl_keyfile", settings.REDIS_SSL_KEYFILE),
    ):
        if value:
            options[option] = value
    return options


def connect(**options: Any) -> Redis:
    """A new client from the settings; `options` are extra redis-py connection options
    (e.g. `socket_timeout=1` for a health check that must not hang)."""
    url = settings.REDIS_URL
    tls = url.startswith("rediss://")
    if not settings.REDIS_SENTINELS:
        return Redis.from_url(url, **(tls_options() if tls else {}), **options)
    parsed = parse_url(url)
    # Options of the connections to the master; the sentinels themselves get the socket
    # options, TLS when the URL asks for it, and their own password.
    master = {key: parsed[key] for key in ("db", "username", "password") if key in parsed}
    master.update(options)
    sentinel = {key: value for key, value in options.items() if key.startswith("socket_")}
    if settings.REDIS_SENTINEL_PASSWORD:
        sentinel["password"] = settings.REDIS_SENTINEL_PASSWORD
    master["connection_class"] = _SentinelSSLConnection if tls else _SentinelConnection
    if tls:
        master.update(tls_options())
        sentinel.update(ssl=True, **tls_options())
    manager = Sentinel(settings.REDIS_SENTINELS, sentinel_kwargs=sentinel, **master)
    return manager.master_for(settings.REDIS_SENTINEL_MASTER)


class _SentinelConnection(SentinelManagedConnection):
    """A connection to the master found through the sentinels that, like every other
    redis-py connection, is dropped when a read is interrupted (RQ's warm shutdown and a
    job's timeout raise inside whatever runs, a Redis read included). redis-py 8.1's
    sentinel connection keeps it, and the next command on it gets the reply of the one
    interrupted (redis-py pull request #4292, open)."""

    def read_response(self, *args: Any, disconnect_on_error: bool | None = True, **kwargs: Any) -> Any:
        return super().read_response(*args, disconnect_on_error=disconnect_on_error, **kwargs)


class _SentinelSSLConnection(_SentinelConnection, SentinelManagedSSLConnection):
    pass


@cache
def redis_connection() -> Redis:
    """The process's Redis client, made on first use (importing opens nothing).

    redis-py's pool notices a fork and opens fresh sockets in the child."""
    return connect()


class DjangoRQConnection(BaseCache):
    """Not a cache: how django-rq reaches `redis_connection()`.

    settings.RQ_QUEUES name this cache alias in `USE_REDIS_CACHE`, and django-rq then
    takes its client from the alias's `_client` (its django-redis-cache path). So the
    workers, `rqscheduler`, `rqsuspend`/`rqresume` and the admin panel use the same
    client, Sentinel and TLS included, instead of building their own from a URL."""

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)

    @property
    def _client(self) -> Redis:
        return redis_connection()
