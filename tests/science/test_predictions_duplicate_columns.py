"""A predictions upload may not name a column twice (ignoring case and spaces): pandas would read
`prompt,prompt` as `prompt` and `prompt.1` and use the first silently."""

import io

import pytest

from benchmark.science.predictors.uploaded import (
    PredictionsFileError,
    read_predictions_csv,
)


@pytest.mark.parametrize(
    "text, column",
    [
        ("prompt,prompt,prediction\np1,p2,0.5\n", "prompt"),
        ("prompt,Prompt ,prediction\np1,p2,0.5\n", "Prompt "),
        ("prompt,prediction,PREDICTION\np1,0.5,0.9\n", "PREDICTION"),
        ("prompt,annotator,prediction, Annotator\np1,a0,0.5,a1\n", "Annotator"),
        ("prompt,note,prediction,note\np1,x,0.5,y\n", "note"),
    ],
)
def test_duplicate_header_is_refused_naming_the_column(text, column):
    with pytest.raises(PredictionsFileError) as caught:
        read_predictions_csv(io.StringIO(text))
    message = str(caught.value)
    assert f"duplicate column {column!r}" in message
    assert caught.value.errors[0][0] == 1  # the header is row 1


def test_duplicate_header_is_refused_by_the_upload_check(small_study):
    from benchmark.uploads import predictions_validate
    from config.errors import ApplicationError

    with pytest.raises(ApplicationError, match="duplicate column 'prompt'"):
        predictions_validate(study=small_study, raw=b"prompt,prompt,prediction\n1,2,0.5\n")


def test_distinct_headers_still_read():
    frame = read_predictions_csv(io.StringIO("Prompt , Prediction\np1,0.25\np2,0.5\n"))
    assert list(frame["prompt"]) == ["p1", "p2"] and list(frame["prediction"]) == [0.25, 0.5]
