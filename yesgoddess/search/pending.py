"""The set of objects waiting to be reindexed, in Redis, and the flush job's trigger.

One sorted set, `search:pending`: member "<type>:<id>", score = when it may be taken
(milliseconds, Redis clock). Marking an object (ZADD, score now) is idempotent, so a
burst of saves of one object is one entry.

- A flush **claims** up to N members whose score has passed and, in the same Lua call,
  moves their score to a lease (now + SEARCH_FLUSH_LEASE_SECONDS; unique per claim).
  The members stay in the set while they are processed.
- When their vectors are written, the flush **acks**: a member is removed only if its
  score is still that claim's lease. An object saved again meanwhile got score "now"
  back, so it stays pending and is indexed again (its new text may have missed the
  UPDATE). Nothing is removed before it is done.
- A flush that dies (worker killed, database gone) acks nothing: its members become
  claimable again when the lease ends. Processing a member twice writes the same vector.

Trigger: `search:flush:queued` means "a flush job is queued and has not started". A
producer that sets it (SET NX) enqueues the job; the job deletes it as its first step,
so anything marked after that starts another flush. (jobs.api's dedup_key would also
count a *running* flush as the one to wait for, and an item marked after the running
flush took its batch would wait for the next save.) A second key, `search:flush:recovery`,
holds at most one delayed flush for members still leased by a flush that may have died.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from redis.commands.core import Script

from yesgoddess.core.redis import redis_connection

PENDING = "search:pending"
LEASE_SEQ = "search:lease-seq"
FLUSH_QUEUED = "search:flush:queued"
RECOVERY_QUEUED = "search:flush:recovery"
# A queued flush that never started (lost queue, expired job) stops blocking new
# flushes after this long.
FLUSH_FLAG_TTL = 300
MARK_CHUNK = 5000

_NOW_MS = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)"

# KEYS: pending, flush flag. ARGV: flag ttl, members... -> 1 if this call set the flag.
_MARK = f"""
{_NOW_MS}
for i = 2, #ARGV, 500 do
  local args = {{}}
  for j = i, math.min(i + 499, #ARGV) do
    args[#args + 1] = now
    args[#args + 1] = ARGV[j]
  end
  redis.call('ZADD', KEYS[1], unpack(args))
end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return 1 end
return 0
"""

# KEYS: pending, lease sequence. ARGV: count, lease ms -> {lease, member...} or {}.
_CLAIM = f"""
{_NOW_MS}
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #items == 0 then return {{}} end
local lease = now + tonumber(ARGV[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if lease <= last then lease = last + 1 end
redis.call('SET', KEYS[2], lease)
for i = 1, #items, 500 do
  local args = {{}}
  for j = i, math.min(i + 499, #items) do
    args[#args + 1] = lease
    args[#args + 1] = items[j]
  end
  redis.call('ZADD', KEYS[1], 'XX', unpack(args))
end
table.insert(items, 1, tostring(lease))
return items
"""

# KEYS: pending. ARGV: lease, members... -> how many were removed.
_ACK = """
local lease = tonumber(ARGV[1])
local removed = 0
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == lease then
    redis.call('ZREM', KEYS[1], ARGV[i])
    removed = removed + 1
  end
end
return removed
"""

# KEYS: pending -> {claimable now, total, earliest score or -1}.
_STATUS = f"""
{_NOW_MS}
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local earliest = -1
if #first > 0 then earliest = tonumber(first[2]) end
return {{redis.call('ZCOUNT', KEYS[1], '-inf', now), redis.call('ZCARD', KEYS[1]), earliest, now}}
"""


@cache
def _script(source: str) -> Script:
    return redis_connection().register_script(source)


def member(object_type: str, object_id: int | str) -> str:
    return f"{object_type}:{object_id}"


def add(members: Sequence[str]) -> bool:
    """Mark members pending (score now); True when this call must enqueue a flush."""
    must_enqueue = False
    script = _script(_MARK)
    for start in range(0, len(members), MARK_CHUNK):
        chunk = list(members[start : start + MARK_CHUNK])
        must_enqueue |= bool(script(keys=[PENDING, FLUSH_QUEUED], args=[FLUSH_FLAG_TTL, *chunk]))
    return must_enqueue


@dataclass(frozen=True)
class Claim:
    lease: int
    members: list[str]


def claim(count: int) -> Claim | None:
    lease_ms = settings.SEARCH_FLUSH_LEASE_SECONDS * 1000
    reply = _script(_CLAIM)(keys=[PENDING, LEASE_SEQ], args=[count, lease_ms])
    if not reply:
        return None
    return Claim(lease=int(reply[0]), members=[item.decode() for item in reply[1:]])


def ack(claim: Claim, members: Iterable[str]) -> int:
    members = list(members)
    if not members:
        return 0
    return int(_script(_ACK)(keys=[PENDING], args=[claim.lease, *members]))


@dataclass(frozen=True)
class Status:
    claimable: int
    total: int
    earliest_ms: int  # -1 when empty
    now_ms: int

    @property
    def seconds_to_next_lease_end(self) -> float:
        return max(0.0, (self.earliest_ms - self.now_ms) / 1000) if self.earliest_ms >= 0 else 0.0


def status() -> Status:
    claimable, total, earliest, now = _script(_STATUS)(keys=[PENDING])
    return Status(int(claimable), int(total), int(earliest), int(now))


def flush_started() -> None:
    """The flush job's first step: from now on a new mark starts a new flush."""
    redis_connection().delete(FLUSH_QUEUED)


def set_flush_flag() -> bool:
    return bool(redis_connection().set(FLUSH_QUEUED, "1", nx=True, ex=FLUSH_FLAG_TTL))


def set_recovery_flag(ttl: int) -> bool:
    return bool(redis_connection().set(RECOVERY_QUEUED, "1", nx=True, ex=max(1, ttl)))


def recovery_started() -> None:
    redis_connection().delete(RECOVERY_QUEUED)


def clear() -> None:
    redis_connection().delete(PENDING, FLUSH_QUEUED, RECOVERY_QUEUED)
