"""What kinds of job exist and who may see a study's jobs: filled in by the apps that use jobs.

An app registers each of its kinds in `AppConfig.ready()`:

    register(JobKind(name="export", label="Dataset export", params=ExportParams, handler=export_run))

`params` is a `jobs.params.StrictParams` serializer (unknown keys are refused); `handler(job, progress)`
does the work and returns the JSON result, calling `progress(fraction, message)` as it goes. The app
that owns studies also says who may see them (`access_set`), so that this app never imports it.

A kind also says which Celery queue runs it (`queue`): SHORT_QUEUE for jobs of seconds (exports), so
that they never wait behind a benchmark, LONG_QUEUE (the default) for benchmarks, analyses and latent
estimation. Workers consume both (one worker with `-Q short,long`, or one per queue); `jobs.routing`
sends each job's message to its kind's queue.

A kind that only reads the study's rows (an export, an analysis) says `replica_reads=True`: with a PostgreSQL
replica configured (`DATABASE_REPLICA_URL`), its handler reads them from the replica (job_run).

Access levels are the study app's ("view", "edit", "own"): a kind says which one starting it needs
(`need`, "edit" unless it only reads the study, as an export does, which a viewer may start).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from config.errors import ApplicationError

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from .models import Job
    from .params import StrictParams

Progress = Callable[[float, str], None]

# The Celery queues jobs run on (settings.CELERY_TASK_DEFAULT_QUEUE is SHORT_QUEUE: the periodic tasks are
# short too). A worker that consumes only SHORT_QUEUE never starts a benchmark.
SHORT_QUEUE = "short"
LONG_QUEUE = "long"
QUEUES = (SHORT_QUEUE, LONG_QUEUE)


@dataclass(frozen=True)
class JobKind:
    name: str
    label: str
    params: type[StrictParams]
    handler: Callable[[Job, Progress], dict]
    # The access level on the study that starting a job of this kind needs: "edit" by default; "view"
    # for a kind that only reads the study and writes files (an export).
    need: str = "edit"
    # The Celery queue its jobs run on: SHORT_QUEUE for jobs of seconds, LONG_QUEUE otherwise.
    queue: str = LONG_QUEUE
    # Whether its handler reads the study's rows from the replica when there is one (config/db_router.py): kinds
    # that only read rows and write files (exports, analyses); its own job row is read on the primary regardless.
    replica_reads: bool = False

    def __post_init__(self) -> None:
        if self.queue not in QUEUES:
            raise ValueError(f"job kind {self.name!r}: unknown queue {self.queue!r}; known: {', '.join(QUEUES)}")


_KINDS: dict[str, JobKind] = {}
_studies_for_user: Callable[[Any, str], QuerySet] | None = None


def register(kind: JobKind) -> JobKind:
    if kind.name in _KINDS and _KINDS[kind.name] != kind:
        raise RuntimeError(f"job kind {kind.name!r} is registered twice")
    _KINDS[kind.name] = kind
    return kind


def kind_get(name: str) -> JobKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise ApplicationError(
            f"unknown job kind {name!r}; known: {', '.join(sorted(_KINDS))}", extra={"field": "kind"}
        ) from None


def kind_choices() -> list[tuple[str, str]]:
    return [(name, _KINDS[name].label) for name in sorted(_KINDS)]


def kind_queue(name: str) -> str:
    """The queue a kind's jobs run on (LONG_QUEUE for a kind this process does not know)."""
    kind = _KINDS.get(name)
    return kind.queue if kind else LONG_QUEUE


def kinds_on_queue(queue: str) -> list[str]:
    return sorted(name for name, kind in _KINDS.items() if kind.queue == queue)


def kind_label(name: str) -> str:
    kind = _KINDS.get(name)
    return kind.label if kind else name


def access_set(studies_for_user: Callable[[Any, str], QuerySet]) -> None:
    """Say which studies a user may act on: `studies_for_user(user, need)` with need "view" (see the study
    and its jobs), "edit" or "own"."""
    global _studies_for_user
    _studies_for_user = studies_for_user


def studies_for_user(user, need: str = "view") -> QuerySet:
    if _studies_for_user is None:
        raise RuntimeError("no study access rule registered (the annotation app registers it in ready())")
    return _studies_for_user(user, need)
