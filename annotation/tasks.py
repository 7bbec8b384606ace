from celery import shared_task

from .models import Study
from .services.assignment import reservations_release


@shared_task(name="annotation.release_reservations", ignore_result=True)
def release_reservations() -> int:
    """Periodic (beat): free the prompts of annotators who went idle, in every recruiting study."""
    return sum(reservations_release(study=study) for study in Study.objects.filter(status=Study.Status.RECRUITING))
