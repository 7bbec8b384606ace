"""Django's PostgreSQL backend, with health checks only for connections that have been idle.

With CONN_HEALTH_CHECKS, Django sends `SELECT 1` before the first query of every request that reuses a
connection: a round trip, and client and server CPU, on every rating. A connection that served a request
less than CONN_HEALTH_CHECK_IDLE seconds ago is taken as alive instead; one idle for longer (a restart of
the database overnight, say) is still checked first. A connection that dies within that second fails its
request as a connection killed during the request does: the rating page answers with an error the
participant retries with the same idempotency key, which stores the answer once
(tests/integration/test_load_faults.py). Errors during a request still get Django's check at its end.
"""

import time

from django.conf import settings
from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    _used_at = 0.0

    def close_if_health_check_failed(self):
        if self.connection is None or not self.health_check_enabled or self.health_check_done:
            return super().close_if_health_check_failed()
        now = time.monotonic()
        recently_used = now - self._used_at < settings.CONN_HEALTH_CHECK_IDLE
        self._used_at = now
        if recently_used:
            self.health_check_done = True
            return None
        return super().close_if_health_check_failed()
