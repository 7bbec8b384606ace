"""Background jobs: one row per long computation, run once by a Celery worker, polled by pages.

This app sits below every app that uses it and imports none of them: apps register their job kinds
(`jobs.registry.register`) and the rule for who may see a study's jobs (`jobs.registry.access_set`)
in their `AppConfig.ready()`.
"""
