"""config.sessions: the database behind a cache, and the way in still open when the cache is down."""

import pytest
from django.contrib.sessions.models import Session

from config.sessions import SessionStore

pytestmark = pytest.mark.django_db


class DownCache:
    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise ConnectionError("cache down")

        return fail

    def __contains__(self, key):
        raise ConnectionError("cache down")


def down(store: SessionStore) -> SessionStore:
    store._cache = DownCache()
    return store


def test_reads_come_from_the_cache_and_survive_without_it():
    store = SessionStore()
    store["annotator:s"] = 7
    store.save()
    key = store.session_key
    assert SessionStore(key).load() == {"annotator:s": 7}

    fresh = down(SessionStore())
    fresh["annotator:t"] = 8
    fresh.create()  # checks `exists` for a free key: must not fail with the cache down
    assert Session.objects.filter(session_key=fresh.session_key).exists()
    assert down(SessionStore(key)).load() == {"annotator:s": 7}  # read from the table
    down(SessionStore(key)).delete()
    assert not Session.objects.filter(session_key=key).exists()


@pytest.mark.parametrize("which", ["project", "locmem"])
def test_a_windowed_counter_counts_within_its_window_and_expires(settings, which):
    """config.cache.counter_add: 1, 2, 3… within a window whose end the first call set, in the project's
    cache (Redis in CI: one pipelined round trip) and in any other Django cache."""
    import uuid

    from django.core.cache import cache as proxy  # what the services import
    from django.core.cache import caches

    from config import settings as project
    from config.cache import Cache, counter_add

    if which == "project":
        settings.CACHES = project.CACHES
    cache = caches["default"]
    if isinstance(cache, Cache):  # the proxy reaches the one-round-trip path too
        assert getattr(proxy, "count", None) is not None
    key = f"test-counter-{uuid.uuid4().hex}"
    assert [counter_add(cache, key, 30) for _ in range(3)] == [1, 2, 3]
    if isinstance(cache, Cache):
        client = cache._cache.get_client(write=True)
        redis_key = cache.make_and_validate_key(key)
        assert 0 < client.ttl(redis_key) <= 30  # set by the first call
        client.expire(redis_key, 100)
        assert counter_add(cache, key, 30) == 4
        assert client.ttl(redis_key) > 30  # a later call keeps the window's end
    cache.delete(key)
    assert counter_add(cache, key, 30) == 1
    cache.delete(key)
