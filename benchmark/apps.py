from django.apps import AppConfig


class BenchmarkConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "benchmark"

    def ready(self):
        from jobs import registry

        from .jobs import ANALYSIS, BENCHMARK, JURY, LATENT, SELECTION
        from .pool_curation import POOL_TOPICS
        from .pool_jobs import TREES, VARIANTS

        registry.register(ANALYSIS)
        registry.register(BENCHMARK)
        registry.register(LATENT)
        registry.register(JURY)
        registry.register(SELECTION)
        registry.register(POOL_TOPICS)
        registry.register(VARIANTS)
        registry.register(TREES)
