from django.urls import path

from .views import dashboards, jury, latent, modelbench, selection

app_name = "benchmark"
urlpatterns = [
    path("studies/<slug:slug>/overview/", dashboards.study_overview, name="overview"),
    path("studies/<slug:slug>/overview/<slug:name>.csv", dashboards.study_overview_csv, name="overview_csv"),
    path("studies/<slug:slug>/agreement/", dashboards.agreement_dashboard, name="agreement"),
    path("studies/<slug:slug>/agreement/recompute/", dashboards.analysis_start, name="analysis_start"),
    path("studies/<slug:slug>/agreement/<slug:name>.csv", dashboards.agreement_csv, name="agreement_csv"),
    path("studies/<slug:slug>/prompts/<str:external_id>/", dashboards.prompt_detail, name="prompt_detail"),
    path("studies/<slug:slug>/benchmark/", modelbench.leaderboard, name="leaderboard"),
    path("studies/<slug:slug>/benchmark/start/", modelbench.benchmark_start, name="benchmark_start"),
    path("studies/<slug:slug>/steering/", modelbench.steering, name="steering"),
    path("studies/<slug:slug>/steering/score/", modelbench.steering_score, name="steering_score"),
    path("studies/<slug:slug>/steering/fit/", modelbench.steering_fit, name="steering_fit"),
    path("studies/<slug:slug>/jury/", jury.jury, name="jury"),
    path("studies/<slug:slug>/jury/start/", jury.jury_start, name="jury_start"),
    path("studies/<slug:slug>/latent/start/", latent.latent_start, name="latent_start"),
    path("studies/<slug:slug>/selection/", selection.selection, name="selection"),
    path("studies/<slug:slug>/selection/start/", selection.selection_start, name="selection_start"),
    path("studies/<slug:slug>/selection/study/", selection.selection_study, name="selection_study"),
    path("latent/checkpoints/", latent.latent_checkpoints, name="latent_checkpoints"),
    path("latent/checkpoints/<str:name>/", latent.latent_checkpoint, name="latent_checkpoint"),
]
