from django.urls import path

from .views import dashboards, jury, latent, modelbench, pool_jobs, pools, selection

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
    path("studies/<slug:slug>/pools/", pools.pool_list, name="pool_list"),
    path("studies/<slug:slug>/pools/new/", pools.pool_create_view, name="pool_create"),
    path("studies/<slug:slug>/pools/<int:pool_id>/", pools.pool_detail, name="pool_detail"),
    path("studies/<slug:slug>/pools/<int:pool_id>/upload/", pools.pool_upload, name="pool_upload"),
    path("studies/<slug:slug>/pools/<int:pool_id>/annotations/", pools.pool_annotations, name="pool_annotations"),
    path("studies/<slug:slug>/pools/<int:pool_id>/topics/", pools.pool_topics_start, name="pool_topics_start"),
    path(
        "studies/<slug:slug>/pools/<int:pool_id>/topics/<int:number>/",
        pools.topic_rename_view,
        name="pool_topic_rename",
    ),
    path("studies/<slug:slug>/pools/<int:pool_id>/select/", pools.pool_select, name="pool_select"),
    path(
        "studies/<slug:slug>/pools/<int:pool_id>/variants/", pool_jobs.pool_variants_start, name="pool_variants_start"
    ),
    path("studies/<slug:slug>/pools/<int:pool_id>/trees/", pool_jobs.pool_trees_start, name="pool_trees_start"),
    path("studies/<slug:slug>/pools/<int:pool_id>/generation/", pool_jobs.pool_generation, name="pool_generation"),
    path(
        "studies/<slug:slug>/pools/<int:pool_id>/candidates/<int:candidate_id>/",
        pools.candidate_detail,
        name="pool_candidate",
    ),
    path("latent/checkpoints/", latent.latent_checkpoints, name="latent_checkpoints"),
    path("latent/checkpoints/<str:name>/", latent.latent_checkpoint, name="latent_checkpoint"),
]
