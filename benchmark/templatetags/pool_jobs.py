"""`{% pool_generation study pool as gen %}`: what the pool page's generation panel shows (the variants and
trees jobs of the pool running or last finished, the pool's variants template), without the pool view
having to know about them."""

from django import template

from jobs.models import Job

from ..pool_jobs import variants_template

register = template.Library()


def _jobs(study, pool, kind: str) -> tuple[Job | None, Job | None]:
    jobs = Job.objects.filter(study=study, kind=kind, params__pool=pool.pk).prefetch_related("artifacts")
    running = jobs.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).order_by("-created_at").first()
    last = jobs.filter(status__in=[Job.Status.SUCCEEDED, Job.Status.FAILED, Job.Status.CANCELLED])
    return running, last.order_by("-finished_at", "-id").first()


@register.simple_tag
def pool_generation(study, pool) -> dict:
    variants_running, variants_last = _jobs(study, pool, "variants")
    trees_running, trees_last = _jobs(study, pool, "trees")
    return {
        "template": variants_template(pool=pool),
        "variants_running": variants_running,
        "variants_last": variants_last,
        "trees_running": trees_running,
        "trees_last": trees_last,
        "n_seeds": pool.candidates.filter(source="uploaded").count(),
        "n_without_tree": pool.candidates.filter(harm_benefit_tree__isnull=True).count(),
    }
