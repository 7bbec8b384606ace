from celery import shared_task

from .models import Annotator, Study
from .services.assignment import reservations_release
from .services.recruitment import unconsented_release


@shared_task(name="annotation.release_reservations", ignore_result=True)
def release_reservations() -> int:
    """Periodic (beat): free the places and prompts of annotators who went idle in every recruiting
    study, and delete arrivals who never consented (in any study: they agreed to nothing)."""
    released = sum(reservations_release(study=study) for study in Study.objects.filter(status=Study.Status.RECRUITING))
    waiting = Study.objects.filter(annotators__status=Annotator.Status.NEW).distinct()
    return released + sum(unconsented_release(study=study) for study in waiting)
