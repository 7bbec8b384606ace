from django.urls import path

from . import views

app_name = "jobs"
urlpatterns = [
    path("", views.jobs_list, name="jobs_list"),
    path("studies/<slug:slug>/", views.study_jobs, name="study_jobs"),
    path("<int:job_id>/", views.job_detail, name="job_detail"),
    path("<int:job_id>/cancel/", views.job_cancel, name="job_cancel"),
    path("<int:job_id>/files/<str:name>", views.artifact_download, name="artifact_download"),
]
