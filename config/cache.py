"""Django's Redis cache, with one redis-py client per connection pool instead of one per call.

Django builds a `redis.Redis` for every cache operation; its constructor registers some 170 response
callbacks, about 0.15 ms of CPU. The rating loop touches the cache twice per rating (the session and the
rate limit), so that was a tenth of the server's CPU per rating (bench/load.py). A client over a pool
is thread-safe; Django's cache objects are per thread anyway.
"""

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


class ReusingClient(RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


# A Redis that accepts connections but never answers (paused, swapping, a half-open network) must not
# hold a request: every caller of the cache (sessions, rate limits) has a fallback for a failed call, so
# give up after a second. OPTIONS in CACHES may override.
SOCKET_TIMEOUTS = {"socket_connect_timeout": 1.0, "socket_timeout": 1.0}


class Cache(RedisCache):
    def __init__(self, server, params):
        params = {**params, "OPTIONS": {**SOCKET_TIMEOUTS, **params.get("OPTIONS", {})}}
        super().__init__(server, params)
        self._class = ReusingClient

    def count(self, key: str, timeout: int) -> int:
        """Add one to the counter `key` (created at 1 with `timeout` seconds to live): one round trip.
        Django's `incr` costs two (EXISTS, then INCR) and needs an `add` for a new window."""
        key = self.make_and_validate_key(key)
        with self._cache.get_client(key, write=True).pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, timeout, nx=True)  # the first of the window sets its end; later ones keep it
            value, _ = pipe.execute()
        return int(value)

    # INCR only the keys that exist: a missing version must stay missing (annotation.study_cache).
    _INCR_EXISTING = (
        "for _, key in ipairs(KEYS) do if redis.call('EXISTS', key) == 1 then redis.call('INCR', key) end end"
    )

    def incr_existing(self, keys: list[str]) -> None:
        """Add one to each of these counters that exists, leaving missing ones missing: one round trip
        (Django's `incr` costs two per key and raises for a missing one)."""
        keys = [self.make_and_validate_key(key) for key in keys]
        self._cache.get_client(keys[0], write=True).eval(self._INCR_EXISTING, len(keys), *keys)


def counter_add(cache, key: str, timeout: int) -> int:
    """One more on a windowed counter, in whichever cache the site has (Redis: one round trip)."""
    count = getattr(cache, "count", None)  # through django.core.cache.cache's proxy too
    if count is not None:
        return count(key, timeout)
    try:
        return cache.incr(key)
    except ValueError:  # the window's first
        return 1 if cache.add(key, 1, timeout=timeout) else cache.incr(key)
