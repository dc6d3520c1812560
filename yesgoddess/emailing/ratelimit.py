"""One send rate for the whole system, shared by every worker through Redis.

A fixed one-second window: each send takes a slot in the current second's counter; when
the second is full the sender sleeps until the next one. Simple, shared across
processes and machines, and accurate to the second, which is what providers count.
"""

from __future__ import annotations

import time

from django.conf import settings

KEY = "ratelimit:email:{second}"


def wait_for_send_slot() -> float:
    """Block until a send is allowed under EMAIL_RATE_LIMIT_PER_SECOND; return the seconds
    waited. A limit of 0 means no limit."""
    limit = settings.EMAIL_RATE_LIMIT_PER_SECOND
    if limit <= 0:
        return 0.0
    from yesgoddess.core.redis import redis_connection

    conn = redis_connection()
    waited = 0.0
    while True:
        now = time.time()
        second = int(now)
        key = KEY.format(second=second)
        with conn.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, 5)
            taken = pipe.execute()[0]
        if taken <= limit:
            return waited
        pause = second + 1 - now
        time.sleep(pause)
        waited += pause
