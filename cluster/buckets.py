"""Token buckets every node draws from, one per user and budget, kept in Redis.

The same arithmetic as ``web.ratelimit.TokenBucket`` (refill at ``rate`` up to ``capacity``;
a read may leave a debt that later reads wait out), done by one Lua script on Redis's clock,
so two nodes spending one user's budget at once cannot both spend the last token. A bucket
expires once it would be full again. Calls go through the link's pipeline: a check costs a
round trip, shared with whatever else the node sends in that pass.
"""

from __future__ import annotations

from cluster.link import RedisLink

# KEYS[1] the bucket; ARGV: rate, capacity, cost, mode. Modes: "take" (cost tokens, or the wait
# until they are there), "admit" (nothing while tokens remain, else the wait until the debt
# and one request's cost are paid), "debit" (cost, even into debt). Answers the wait, in seconds.
BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, capacity, cost, mode = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(saved[1]) or capacity
local updated = tonumber(saved[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - updated) * rate)
local wait = 0
if mode == 'take' then
  if tokens >= cost then tokens = tokens - cost else wait = (cost - tokens) / rate end
elseif mode == 'admit' then
  if tokens <= 0 then wait = (cost - tokens) / rate end
else
  tokens = math.max(-capacity, tokens - cost)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(2 * capacity / rate * 1000) + 1000)
return tostring(wait)
"""


class SharedBuckets:
    def __init__(self, link: RedisLink) -> None:
        self._link = link

    async def draw(self, key: str, rate: float, capacity: float, cost: float, mode: str) -> float:
        """The seconds to wait (0: allowed); ``LinkDown`` while Redis is away."""
        return float(await self._link.call("EVAL", BUCKET, 1, f"chat:rl:{key}", rate, capacity, cost, mode))

    def debit(self, key: str, rate: float, capacity: float, cost: float) -> None:
        self._link.send_and_forget("EVAL", BUCKET, 1, f"chat:rl:{key}", rate, capacity, cost, "debit")
