from django.urls import path

from .views import annotator

app_name = "take"
urlpatterns = [
    path("<slug:slug>/", annotator.enter, name="enter"),
    path("<slug:slug>/consent/", annotator.consent, name="consent"),
    path("<slug:slug>/survey/<slug:key>/", annotator.survey, name="survey"),
    path("<slug:slug>/instructions/", annotator.instructions, name="instructions"),
    path("<slug:slug>/rate/", annotator.rate, name="rate"),
    path("<slug:slug>/rate/<int:assignment_id>/", annotator.rate_submit, name="rate_submit"),
    path("<slug:slug>/rate/<int:assignment_id>/revise/", annotator.rate_revise, name="revise"),
    path("<slug:slug>/done/", annotator.done, name="done"),
    path("<slug:slug>/stopped/", annotator.stopped, name="stopped"),
]
