"""Sessions in the database with Redis in front (Django's cached_db), surviving a Redis outage.

Django's cached_db already falls back to the table when a cache read or write fails; its `exists` and
`delete` do not, so without Redis no one could join a study (a new session key is checked with
`exists`). Here they fall back to the table too, and log the failure.
"""

import logging

from django.contrib.sessions.backends import cached_db, db

logger = logging.getLogger("django.contrib.sessions")


class SessionStore(cached_db.SessionStore):
    def exists(self, session_key):
        try:
            return super().exists(session_key)
        except Exception:
            logger.warning("session cache unavailable; checking the database only")
            return db.SessionStore.exists(self, session_key)

    def delete(self, session_key=None):
        try:
            super().delete(session_key)
        except Exception:
            # The row is gone (the database delete runs first); the cached copy may outlive it until it
            # expires, so say so loudly.
            logger.error("session cache unavailable: a deleted session may stay cached until it expires")
