"""Properties of the science core, on generated data (Hypothesis).

Krippendorff's α does not depend on what annotators and prompts are called nor on the order of the
long table's rows, is 1 for identical annotators, treats "Unsure" as missing whatever rating the row
carries, and its closed form (used for many distinct values) is the package's number. The MAE
protocol does not depend on the order of the ratings' rows nor of a predictions file's rows, reads a
0–100 file as the same predictions on 0–1, and scores perfect predictions 0.
"""

from __future__ import annotations

import io
import math

import krippendorff
import numpy as np
import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from benchmark.science.agreement import (
    RatingsMatrix,
    _alpha_interval_from_sums,
    _unit_sums,
    _value_counts,
    krippendorff_alpha,
)
from benchmark.science.predictors.uploaded import UploadedPredictions, read_predictions_csv
from benchmark.science.protocol import make_splits, run_benchmark, score_predictions

FAST = settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=6, suppress_health_check=[HealthCheck.too_slow])

# A cell: a rating 0–100 (whole or with decimals), "U" for Unsure, or None for never shown.
cells = st.one_of(
    st.integers(0, 100).map(float),
    st.floats(0, 100, allow_nan=False).map(lambda x: round(x, 2)),
    st.just("U"),
    st.none(),
)


@st.composite
def grids(draw, min_annotators=2, max_annotators=6, min_prompts=2, max_prompts=8):
    n_a = draw(st.integers(min_annotators, max_annotators))
    n_p = draw(st.integers(min_prompts, max_prompts))
    return [[draw(cells) for _ in range(n_p)] for _ in range(n_a)]


def frame_of(grid, annotators=None, prompts=None, *, unsure_rating=np.nan) -> pd.DataFrame:
    """The long table of a grid: one row per shown cell; Unsure rows carry `unsure_rating`."""
    annotators = annotators or [f"a{i}" for i in range(len(grid))]
    prompts = prompts or [f"q{j}" for j in range(len(grid[0]))]
    rows = []
    for i, row in enumerate(grid):
        for j, cell in enumerate(row):
            if cell is None:
                continue
            unsure = cell == "U"
            rows.append(
                {
                    "annotator": annotators[i],
                    "prompt": prompts[j],
                    "rating": unsure_rating if unsure else cell,
                    "unsure": unsure,
                }
            )
    return pd.DataFrame(rows, columns=["annotator", "prompt", "rating", "unsure"])


def same(a: float, b: float) -> bool:
    """Equal up to float summation order, or both undefined."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def labels(draw, n: int) -> list[str]:
    return draw(st.lists(st.text("abcxyz0123456789_", min_size=1, max_size=6), min_size=n, max_size=n, unique=True))


# --------------------------------------------------------------------------- Krippendorff's α


@FAST
@given(grid=grids(), data=st.data())
def test_alpha_is_invariant_to_relabelling_and_permuting_annotators_prompts_and_rows(grid, data):
    n_a, n_p = len(grid), len(grid[0])
    before = krippendorff_alpha(frame_of(grid))
    people = data.draw(st.permutations(range(n_a)))
    items = data.draw(st.permutations(range(n_p)))
    permuted = [[grid[i][j] for j in items] for i in people]
    renamed = frame_of(permuted, labels(data.draw, n_a), labels(data.draw, n_p))
    shuffled = renamed.sample(frac=1.0, random_state=data.draw(st.integers(0, 2**32 - 1)))
    assert same(krippendorff_alpha(shuffled), before)
    for level in ("ordinal", "ratio"):
        assert same(krippendorff_alpha(shuffled, level=level), krippendorff_alpha(frame_of(grid), level=level))


@FAST
@given(
    ratings=st.lists(st.integers(0, 100), min_size=2, max_size=10).filter(lambda r: len(set(r)) > 1),
    n_annotators=st.integers(2, 6),
    data=st.data(),
)
def test_alpha_is_one_for_identical_annotators(ratings, n_annotators, data):
    # Some cells Unsure or never shown; the first two annotators both rate the first prompt, so α is defined.
    gaps = st.sampled_from(["rated", "rated", "U", None])
    grid = [
        [r if (i < 2 and j == 0) or data.draw(gaps) == "rated" else data.draw(gaps) for j, r in enumerate(ratings)]
        for i in range(n_annotators)
    ]
    grid = [[float(c) if isinstance(c, int) else c for c in row] for row in grid]
    frame = frame_of(grid)
    assert krippendorff_alpha(frame) == 1.0
    domain, counts = _value_counts(RatingsMatrix.from_frame(frame))
    assert _alpha_interval_from_sums(*_unit_sums(domain, counts)) == 1.0


@FAST
@given(grid=grids(), garbage=st.sampled_from([0.0, 50.0, 100.0, 1e6, -7.0]))
@example(grid=[[None, None], [None, None]], garbage=0.0)  # nothing shown at all (found by Hypothesis in CI)
def test_unsure_is_missing_whatever_rating_its_row_carries(grid, garbage):
    with_nan = frame_of(grid)
    with_garbage = frame_of(grid, unsure_rating=garbage)
    dropped = with_nan[~with_nan["unsure"].astype(bool)]  # an empty column is object-typed: no row filter
    no_flag = with_nan.drop(columns="unsure")  # a NaN rating without the column is missing
    alpha = krippendorff_alpha(with_nan)
    for other in (with_garbage, dropped, no_flag):
        assert same(krippendorff_alpha(other), alpha)
    n_unsure = sum(cell == "U" for row in grid for cell in row)
    assert RatingsMatrix.from_frame(with_garbage).n_unsure == n_unsure
    assert RatingsMatrix.from_frame(with_garbage).n_ratings == RatingsMatrix.from_frame(dropped).n_ratings


@FAST
@given(grid=grids(), scale=st.sampled_from([0.01, 0.5, 3.0, -1.0, -20.0]), shift=st.floats(-100, 100))
def test_interval_alpha_is_invariant_to_affine_rescaling(grid, scale, shift):
    frame = frame_of(grid)
    moved = frame.assign(rating=frame["rating"] * scale + shift)
    assert math.isclose(krippendorff_alpha(moved), krippendorff_alpha(frame), rel_tol=1e-7, abs_tol=1e-9) or (
        math.isnan(krippendorff_alpha(moved)) and math.isnan(krippendorff_alpha(frame))
    )


@FAST
@given(grid=grids(max_annotators=8, max_prompts=12))
def test_interval_closed_form_equals_the_package(grid):
    domain, counts = _value_counts(RatingsMatrix.from_frame(frame_of(grid)))
    pairable = counts.sum(axis=1) >= 2
    disagreement = ((counts[pairable] > 0).sum(axis=1) > 1).any() if counts.size else False
    if not disagreement:
        return  # the package divides 0 by 0 there; α = 1 or NaN is covered above
    package = krippendorff.alpha(value_counts=counts, value_domain=domain, level_of_measurement="interval")
    closed = float(_alpha_interval_from_sums(*_unit_sums(domain, counts)))
    assert math.isclose(closed, package, rel_tol=1e-9, abs_tol=1e-12)


# --------------------------------------------------------------------------- the MAE protocol


@st.composite
def scored_rows(draw):
    n = draw(st.integers(1, 40))
    return pd.DataFrame(
        {
            "annotator": draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=n, max_size=n)),
            "prompt": draw(st.lists(st.sampled_from(["1", "2", "3", "4", "5"]), min_size=n, max_size=n)),
            "score": draw(st.lists(st.integers(0, 100).map(lambda r: r / 100), min_size=n, max_size=n)),
            "prediction": draw(
                st.lists(st.one_of(st.floats(0, 1), st.just(np.nan)), min_size=n, max_size=n),
            ),
        }
    )


@FAST
@given(scored=scored_rows(), seed=st.integers(0, 2**32 - 1))
def test_scores_are_invariant_to_row_order_and_scale_with_the_unit(scored, seed):
    overall, per_annotator, per_prompt = score_predictions(scored)
    shuffled, shuffled_annotators, _ = score_predictions(scored.sample(frac=1.0, random_state=seed))
    for key in ("mae", "ci_low_annotators", "ci_high_annotators", "spearman", "wasserstein", "coverage"):
        assert same(shuffled[key], overall[key]), key
    for key in ("n_annotators", "n_prompts", "n_ratings"):
        assert shuffled[key] == overall[key]
    a = per_annotator.set_index("annotator").sort_index()
    b = shuffled_annotators.set_index("annotator").sort_index()
    assert list(a.index) == list(b.index) and all(same(x, y) for x, y in zip(a["mae"], b["mae"]))
    # The same errors on 0–100: the MAE is 100 times the MAE on 0–1.
    percent, _, _ = score_predictions(scored.assign(score=scored["score"] * 100, prediction=scored["prediction"] * 100))
    assert same(percent["mae"], overall["mae"] * 100)
    # Predicting every score exactly scores 0.
    perfect, _, _ = score_predictions(scored.assign(prediction=scored["score"]))
    assert perfect["mae"] == 0.0 and perfect["coverage"] == 1.0


@st.composite
def studies(draw):
    """A long ratings frame of 150 prompts (100 alignment / 50 test), a few annotators, some Unsure.

    Prompt ids come in a drawn order; the ratings are drawn from a seeded generator (Hypothesis
    shrinks the seed, not 750 numbers one by one).
    """
    n_a, n_p = draw(st.integers(2, 5)), 150
    prompts = np.array([str(p) for p in draw(st.permutations(range(1, n_p + 1)))], dtype=object)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rating = rng.integers(0, 101, size=n_a * n_p).astype(float)
    unsure = np.zeros(n_a * n_p, dtype=bool)
    unsure[rng.choice(n_a * n_p, size=draw(st.integers(0, 10)), replace=False)] = True
    return pd.DataFrame(
        {
            "annotator": np.repeat([f"P{a + 1:04d}" for a in range(n_a)], n_p),
            "prompt": np.tile(prompts, n_a),
            "rating": np.where(unsure, np.nan, rating),
            "unsure": unsure,
            "trial": np.tile(np.arange(n_p), n_a),
        }
    )


def predictions_csv(frame: pd.DataFrame, values: np.ndarray, *, percent: bool, per_annotator: bool) -> str:
    table = frame[["prompt", "annotator"]].assign(prediction=values * (100 if percent else 1))
    if not per_annotator:
        table = table.drop_duplicates("prompt")[["prompt", "prediction"]]  # the first row's value per prompt
    return table.to_csv(index=False, float_format=lambda x: repr(float(x)))


def mae_by_condition(frame: pd.DataFrame, predictions_text: str) -> dict[str, list[float]]:
    predictions = read_predictions_csv(
        io.StringIO(predictions_text), prompts=frame["prompt"].unique(), annotators=frame["annotator"].unique()
    )
    result = run_benchmark(
        frame, [UploadedPredictions(predictions)], conditions=["individual", "aggregated"], n_splits=2, seed=7
    )
    # The 50 test prompts of 150 are scored, less any that every annotator marked Unsure (no truth).
    answered = set(frame.loc[frame["rating"].notna(), "prompt"].astype(str))
    expected = {split.index: len(answered.intersection(split.test)) for split in result.splits}
    out = {}
    for condition, group in result.per_split.groupby("condition"):
        out[condition] = group.sort_values("split")["mae"].tolist()
        assert group["n_prompts"].tolist() == [expected[i] for i in group["split"]], condition
    return out


@SLOW
@given(frame=studies(), data=st.data())
def test_benchmark_mae_is_invariant_to_the_order_of_ratings_and_predictions(frame, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    values = rng.integers(0, 101, size=len(frame)) / 100
    per_annotator = data.draw(st.booleans())
    text = predictions_csv(frame, values, percent=False, per_annotator=per_annotator)
    before = mae_by_condition(frame, text)

    order = rng.permutation(len(frame))
    lines = text.splitlines()
    shuffled_text = "\n".join([lines[0], *rng.permutation(lines[1:]).tolist()]) + "\n"
    after = mae_by_condition(frame.iloc[order].reset_index(drop=True), shuffled_text)
    assert before.keys() == after.keys() == {"individual", "aggregated"}
    for condition in before:
        assert all(same(x, y) for x, y in zip(before[condition], after[condition])), condition


@SLOW
@given(frame=studies(), data=st.data())
def test_benchmark_mae_on_a_percent_file_equals_the_unit_file(frame, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    values = rng.integers(0, 101, size=len(frame)) / 100
    values[0] = 0.5  # a value above 1 on 0–100, so "auto" reads the percent file as percent
    unit = mae_by_condition(frame, predictions_csv(frame, values, percent=False, per_annotator=True))
    percent = mae_by_condition(frame, predictions_csv(frame, values, percent=True, per_annotator=True))
    for condition in unit:
        assert all(same(x, y) for x, y in zip(unit[condition], percent[condition])), condition


@SLOW
@given(frame=studies())
def test_perfect_predictions_score_zero(frame):
    truth = (frame["rating"] / 100).fillna(0.5).to_numpy()  # Unsure cells are not scored
    individual = mae_by_condition(frame, predictions_csv(frame, truth, percent=False, per_annotator=True))
    assert individual["individual"] == [0.0, 0.0]
    # Annotators who all agree: the per-prompt value is perfect in the aggregated condition too.
    first = frame.groupby("prompt")["rating"].first().fillna(50.0)
    agreeing = frame.assign(rating=frame["prompt"].map(first), unsure=False)
    values = (agreeing["rating"] / 100).to_numpy()
    agreed = mae_by_condition(agreeing, predictions_csv(agreeing, values, percent=False, per_annotator=False))
    assert agreed["aggregated"] == [0.0, 0.0] and agreed["individual"] == [0.0, 0.0]


def test_splits_do_not_depend_on_the_order_ids_come_in():
    prompts = [str(p) for p in range(1, 151)]
    people = [f"P{a:04d}" for a in range(1, 21)]
    rng = np.random.default_rng(0)
    a = make_splits(prompts, people, n_splits=3, seed=1)
    b = make_splits(rng.permutation(prompts).tolist(), rng.permutation(people).tolist(), n_splits=3, seed=1)
    assert a == b
    assert all(len(s.test) == 50 and len(s.alignment) == 100 for s in a)
