from django.urls import path

from . import views

app_name = "benchmark"
urlpatterns = [
    path("studies/<slug:slug>/export/", views.export_start, name="export_start"),
    path("studies/<slug:slug>/overview/", views.study_overview, name="overview"),
    path("studies/<slug:slug>/overview/<slug:name>.csv", views.study_overview_csv, name="overview_csv"),
    path("studies/<slug:slug>/agreement/", views.agreement_dashboard, name="agreement"),
    path("studies/<slug:slug>/agreement/recompute/", views.analysis_start, name="analysis_start"),
    path("studies/<slug:slug>/agreement/<slug:name>.csv", views.agreement_csv, name="agreement_csv"),
    path("studies/<slug:slug>/prompts/<str:external_id>/", views.prompt_detail, name="prompt_detail"),
    path("studies/<slug:slug>/benchmark/", views.leaderboard, name="leaderboard"),
    path("studies/<slug:slug>/benchmark/start/", views.benchmark_start, name="benchmark_start"),
    path("studies/<slug:slug>/steering/", views.steering, name="steering"),
    path("studies/<slug:slug>/steering/score/", views.steering_score, name="steering_score"),
    path("studies/<slug:slug>/steering/fit/", views.steering_fit, name="steering_fit"),
    path("jobs/<int:job_id>/", views.job_detail, name="job_detail"),
    path("jobs/<int:job_id>/files/<str:name>", views.artifact_download, name="artifact_download"),
]
