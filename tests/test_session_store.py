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
