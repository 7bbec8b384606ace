"""The Django admin covers every model and its pages render."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from jobs.models import Job

pytestmark = pytest.mark.django_db


def test_every_model_is_registered():
    for app in ("annotation", "jobs", "benchmark"):
        for model in apps.get_app_config(app).get_models():
            assert admin.site.is_registered(model), model


def test_changelists_and_add_pages_render(client, staff, small_study):
    client.force_login(staff)
    for app in ("annotation", "jobs", "benchmark"):
        for model in apps.get_app_config(app).get_models():
            if not admin.site.is_registered(model):
                continue
            meta = model._meta
            assert client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")).status_code == 200
            add = client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_add")).status_code
            read_only = {"JobArtifact", "Upload", "AnnotatorStatusChange", "RatingRevision"}
            assert add == (403 if model.__name__ in read_only else 200), model


def test_study_export_action_queues_a_job(client, staff, small_study, monkeypatch, django_capture_on_commit_callbacks):
    queued = []
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: queued.append(job_id))
    client.force_login(staff)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:annotation_study_changelist"),
            {"action": "export_parquet", "_selected_action": [small_study.pk]},
        )
    assert response.status_code == 302
    job = Job.objects.get()
    assert job.params == {"format": "parquet"} and queued == [job.pk]


def test_adding_a_job_in_the_admin_validates_and_queues(
    client, staff, small_study, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: queued.append(job_id))
    client.force_login(staff)
    url = reverse("admin:jobs_job_add")
    inline = {"artifacts-TOTAL_FORMS": "0", "artifacts-INITIAL_FORMS": "0"}
    bad = client.post(url, {"kind": "export", "study": small_study.pk, "params": '{"format": "xlsx"}', **inline})
    assert bad.status_code == 200 and b"unknown export format" in bad.content and Job.objects.count() == 0
    with django_capture_on_commit_callbacks(execute=True):
        good = client.post(url, {"kind": "export", "study": small_study.pk, "params": '{"format": "jsonl"}', **inline})
    assert good.status_code == 302
    job = Job.objects.get()
    assert job.created_by == staff and queued == [job.pk]
