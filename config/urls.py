from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from annotation.api import PromptViewSet
from annotation.api_annotators import AnnotatorViewSet
from annotation.api_collaborators import CollaboratorViewSet
from annotation.api_ratings import RatingViewSet
from annotation.api_studies import StudyViewSet
from benchmark.api import PredictionsUploadView
from config.health import healthz, healthz_live
from jobs.api import JobViewSet

router = DefaultRouter()
router.register("studies", StudyViewSet, basename="study")
router.register("jobs", JobViewSet, basename="job")

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="annotation:study_list", permanent=False)),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("healthz/live", healthz_live, name="healthz-live"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("s/", include("annotation.take_urls")),
    path("research/", include("annotation.urls")),
    path("research/", include("benchmark.urls")),
    path("research/jobs/", include("jobs.urls")),
    path("api/", include(router.urls)),
    path(
        "api/studies/<slug:slug>/prompts/",
        PromptViewSet.as_view({"get": "list", "post": "create"}),
        name="study-prompts",
    ),
    path("api/studies/<slug:slug>/annotators/", AnnotatorViewSet.as_view({"get": "list"}), name="study-annotators"),
    path(
        "api/studies/<slug:slug>/annotators/<str:pseudonym>/exclude/",
        AnnotatorViewSet.as_view({"post": "exclude"}),
        name="study-annotator-exclude",
    ),
    path(
        "api/studies/<slug:slug>/annotators/<str:pseudonym>/reinstate/",
        AnnotatorViewSet.as_view({"post": "reinstate"}),
        name="study-annotator-reinstate",
    ),
    path(
        "api/studies/<slug:slug>/collaborators/",
        CollaboratorViewSet.as_view({"get": "list", "post": "create"}),
        name="study-collaborators",
    ),
    path(
        "api/studies/<slug:slug>/collaborators/<str:username>/",
        CollaboratorViewSet.as_view({"patch": "partial_update", "delete": "destroy"}),
        name="study-collaborator",
    ),
    path("api/studies/<slug:slug>/ratings/", RatingViewSet.as_view({"get": "list"}), name="study-ratings"),
    path("api/studies/<slug:slug>/ratings.csv", RatingViewSet.as_view({"get": "export_csv"}), name="study-ratings-csv"),
    path(
        "api/studies/<slug:slug>/uploads/predictions/", PredictionsUploadView.as_view(), name="study-predictions-upload"
    ),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
]
