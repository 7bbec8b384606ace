"""Reads of exports and analyses from a PostgreSQL replica (`DATABASE_REPLICA_URL`, alias "replica").

Only code that says so reads from the replica: inside `reading_from_replica()` (entered by the job runner
for the kinds that ask for it, `JobKind.replica_reads`: exports, analyses, benchmarks), reads go to the
replica; a streamed download, read after its view returns, asks `replica_read_alias()` for its alias;
everywhere else reads go to the primary. A router that sent every read to the replica would break
read-after-write where it matters (the rating loop reads the trial it just stored; a page reloads the
study it just saved), since a replica replays the primary's commits a little later.

Inside the context, still on the primary:
- every write (and `select_for_update`, `get_or_create`, `update_or_create`, which Django runs as writes);
- reads of the job tables (PRIMARY_APPS): a running job reads its own row (a cancel request) and writes
  its progress and files meanwhile;
- reads while the primary has a transaction open on this thread: rows it wrote in that transaction are
  not on the replica before it commits. (This also keeps a test suite whose tests run inside a transaction
  working when the replica alias mirrors the test database: TEST MIRROR.)

Migrations run on the primary only. Without `DATABASE_REPLICA_URL` there is no "replica" alias and every
read goes to the primary, inside the context too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, router

logger = logging.getLogger(__name__)

REPLICA = "replica"
# Apps whose rows are read on the primary even inside the context.
PRIMARY_APPS = frozenset({"jobs"})

_replica_reads: ContextVar[bool] = ContextVar("replica_reads", default=False)


def replica_configured() -> bool:
    return REPLICA in connections.settings


def replica_routable() -> bool:
    """Whether reads inside `reading_from_replica()` would go to the replica on this thread now: there is one,
    and the primary has no transaction open here."""
    return replica_configured() and not connections[DEFAULT_DB_ALIAS].in_atomic_block


@contextmanager
def reading_from_replica() -> Iterator[None]:
    """Reads of the rows exports and analyses are made of go to the replica (when there is one)."""
    token = _replica_reads.set(True)
    try:
        yield
    finally:
        _replica_reads.reset(token)


def replica_has(model, pk, *, wait: float = 0.0, interval: float = 0.2) -> bool:
    """Whether the replica already has the row `pk` of `model`, waiting up to `wait` seconds for it.

    A replica replays the primary's commits in order, so once it has a row it has everything committed
    before it: a job that finds its own row there finds the study, the ratings and the uploads it was
    started on. False without a replica, or if the replica cannot be read (logged)."""
    if not replica_configured():
        return False
    deadline = time.monotonic() + wait
    while True:
        try:
            if model._base_manager.using(REPLICA).filter(pk=pk).exists():
                return True
        except DatabaseError:
            logger.warning("the replica could not be read; reading from the primary", exc_info=True)
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def replica_read_alias(model) -> str:
    """The alias an export or analysis outside a job reads `model` from (a streamed download, which reads after
    its view returns, so outside any context): the replica when the router would send the read there and the
    replica answers; the primary otherwise (logged)."""
    with reading_from_replica():
        alias = router.db_for_read(model)
    if alias == REPLICA:
        try:
            connections[REPLICA].ensure_connection()
        except DatabaseError:
            logger.warning("the replica could not be reached; reading from the primary", exc_info=True)
            return DEFAULT_DB_ALIAS
    return alias


class ReplicaRouter:
    """settings.DATABASE_ROUTERS: reads inside `reading_from_replica()` to the replica, the rest to the primary."""

    def db_for_read(self, model, **hints):
        if _replica_reads.get() and model._meta.app_label not in PRIMARY_APPS and replica_routable():
            return REPLICA
        # Explicitly the primary: left to Django, a related object of a row read on the replica would be read
        # on the replica too, outside the context.
        return DEFAULT_DB_ALIAS

    def db_for_write(self, model, **hints):
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        # One database seen twice: a row read on the replica may point at one read on the primary.
        if {obj1._state.db, obj2._state.db} <= {DEFAULT_DB_ALIAS, REPLICA, None}:
            return True
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db != REPLICA
