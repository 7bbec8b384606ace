from django.apps import AppConfig
from django.core.management import call_command
from django.db.models.signals import post_migrate


def _cache_tables_create(sender, using, verbosity=1, **kwargs):
    """Create the database cache table (settings.CACHES without Redis) wherever `migrate` runs:
    `make demo`, deployments and the test databases alike. Idempotent; does nothing for other backends."""

    call_command("createcachetable", database=using, verbosity=max(0, verbosity - 1))


class AnnotationConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "annotation"

    def ready(self):
        from django.core import checks

        from config.checks import keys_check
        from jobs import registry

        from . import access, study_cache
        from .jobs import EXPORT
        from .services.recruitment import rate_limit_check

        registry.register(EXPORT)
        registry.access_set(access.studies_for_user)
        post_migrate.connect(_cache_tables_create, sender=self, dispatch_uid="annotation.cache_tables_create")
        study_cache.signals_connect()
        checks.register(rate_limit_check)
        checks.register(keys_check, deploy=True)
