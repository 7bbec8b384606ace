"""One reader of the release format: the frame read from the files is the frame of the imported study.

The importer, the analyses (`benchmark.analysis.study_frame`), the model benchmark
(`benchmark.evaluation.benchmark_frame`) and the science code reading the files directly
(`release_read(...).long()`) used to be three readers with two spellings of an annotator.
"""

import pandas as pd

from annotation.models import Annotator
from annotation.selectors import ratings_frame
from benchmark.analysis import study_frame
from benchmark.evaluation import benchmark_frame
from benchmark.science.release import RELEASE_DIR, release_read

SHARED = ["annotator", "prompt", "rating", "unsure", "trial"]


def _by_cell(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The columns, string ones as plain str, rows sorted by (annotator, prompt number)."""
    out = frame[columns].copy()
    for column in columns:
        if out[column].dtype.kind not in "biuf":
            out[column] = out[column].astype(object).astype(str)
    out = out.assign(_number=out["prompt"].astype(int)).sort_values(["annotator", "_number"], kind="stable")
    return out.drop(columns="_number").reset_index(drop=True)


def test_the_imported_study_names_annotators_as_the_release_frame_does(release_study):
    release = release_read(RELEASE_DIR)
    people = list(Annotator.objects.filter(study=release_study).order_by("id").values_list("pseudonym", "source_id"))
    assert people == list(zip(release.annotators, release.participants))
    assert people[0] == ("P0001", "0") and people[-1] == ("P0100", "99")


def test_files_and_imported_study_give_the_same_frame_row_for_row(release_study):
    from_files = release_read(RELEASE_DIR).long(include_text=True)
    frames = {
        "ratings_frame": ratings_frame(study=release_study),
        "study_frame": study_frame(study=release_study),
        "benchmark_frame": benchmark_frame(study=release_study),
    }
    for name, frame in frames.items():
        assert len(frame) == len(from_files) == 15_000, name
        # The rating cells, then everything else the file frame has (traits, harm level, features;
        # the prompt text where the frame carries it), compared exactly.
        pd.testing.assert_frame_equal(_by_cell(frame, SHARED), _by_cell(from_files, SHARED), check_exact=True, obj=name)
        columns = [c for c in from_files.columns if c in frame.columns]
        assert set(from_files.columns) - set(columns) <= {"text"}, name
        pd.testing.assert_frame_equal(
            _by_cell(frame, columns), _by_cell(from_files, columns), check_exact=True, obj=name
        )
    assert "text" in frames["benchmark_frame"]
