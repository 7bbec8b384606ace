from django.urls import path

from .views import builder, collaborators, datasets, participants, prompt_bank, research

app_name = "annotation"
urlpatterns = [
    path("studies/", research.study_list, name="study_list"),
    path("studies/new/", builder.study_new, name="study_new"),
    path("studies/<slug:slug>/", research.study_detail, name="study_detail"),
    path("studies/<slug:slug>/export/", research.export_start, name="export_start"),
    path("studies/<slug:slug>/datasets/", datasets.datasets, name="datasets"),
    path("studies/<slug:slug>/prompts/upload/", prompt_bank.prompt_bank_upload, name="prompt_bank_upload"),
    path("studies/<slug:slug>/prompts/import/", prompt_bank.prompt_bank_import, name="prompt_bank_import"),
    path("studies/<slug:slug>/edit/", builder.study_edit, name="study_edit"),
    path("studies/<slug:slug>/edit/<slug:section>/", builder.study_section_save, name="study_section_save"),
    path("studies/<slug:slug>/status/", builder.study_status, name="study_status"),
    path("studies/<slug:slug>/duplicate/", builder.study_copy, name="study_duplicate"),
    path("studies/<slug:slug>/preview/", builder.study_preview, name="study_preview"),
    path("studies/<slug:slug>/collaborators/", collaborators.collaborators, name="collaborators"),
    path("studies/<slug:slug>/collaborators/add/", collaborators.collaborator_create, name="collaborator_create"),
    path(
        "studies/<slug:slug>/collaborators/<str:username>/role/",
        collaborators.collaborator_update,
        name="collaborator_update",
    ),
    path(
        "studies/<slug:slug>/collaborators/<str:username>/remove/",
        collaborators.collaborator_delete,
        name="collaborator_delete",
    ),
    path("studies/<slug:slug>/participants/", participants.participants, name="participants"),
    path("studies/<slug:slug>/participants.csv", participants.participants_csv, name="participants_csv"),
    path("studies/<slug:slug>/participants/lookup/", participants.recruitment_lookup_page, name="recruitment_lookup"),
    path(
        "studies/<slug:slug>/participants/lookup/verdicts.csv",
        participants.recruitment_lookup_csv,
        name="recruitment_lookup_csv",
    ),
    path(
        "studies/<slug:slug>/participants/<str:pseudonym>/", participants.participant_detail, name="participant_detail"
    ),
    path(
        "studies/<slug:slug>/participants/<str:pseudonym>/exclude/",
        participants.participant_exclude,
        name="participant_exclude",
    ),
    path(
        "studies/<slug:slug>/participants/<str:pseudonym>/reinstate/",
        participants.participant_reinstate,
        name="participant_reinstate",
    ),
]
