from django.urls import path

from .views import datasets, research

app_name = "annotation"
urlpatterns = [
    path("studies/", research.study_list, name="study_list"),
    path("studies/<slug:slug>/", research.study_detail, name="study_detail"),
    path("studies/<slug:slug>/export/", research.export_start, name="export_start"),
    path("studies/<slug:slug>/datasets/", datasets.datasets, name="datasets"),
]
