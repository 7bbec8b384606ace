"""Sessions in the database with Redis in front (Django's cached_db), surviving a Redis outage.

Django's cached_db falls back to the table when a cache read fails, but then refills the cache without
a guard, and its `exists` and `delete` have none either: without Redis, every annotator's page would
fail and no one could join a study. Here each falls back to the table, and logs the failure.
"""

import logging

from django.contrib.sessions.backends import cached_db, db
from django.db import DatabaseError

logger = logging.getLogger("django.contrib.sessions")


class SessionStore(cached_db.SessionStore):
    def load(self):
        try:
            return super().load()
        except DatabaseError:
            raise
        except Exception:
            logger.warning("session cache unavailable; reading the database only")
            return db.SessionStore.load(self)

    def exists(self, session_key):
        try:
            return super().exists(session_key)
        except DatabaseError:
            raise
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
