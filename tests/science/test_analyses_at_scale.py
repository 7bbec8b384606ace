"""The faster analyses (issue 14) give the figures the earlier code gave, and the references' figures.

The release fixture holds `descriptive_report` and `fit_all` on the release as computed before the
changes (tests/science/data/release_figures_before_issue14.json); the other tests compare each new
computation with a direct one (the `krippendorff` package, definitions written out, the old row-wise
sums) on small data with absent cells and Unsure answers.
"""

import json
import math
from pathlib import Path

import krippendorff
import numpy as np
import pandas as pd
import pytest

from benchmark.science import agreement
from benchmark.science import mixed_effects as me
from benchmark.science.agreement import RatingsMatrix
from benchmark.science.report import descriptive_report, to_jsonable

from .frames import long_frame

FIXTURE = Path(__file__).parent / "data" / "release_figures_before_issue14.json"


def _assert_same(old, new, path=""):
    """Equal structure; numbers within 1e-9 (absolute, or relative for large values)."""
    if isinstance(old, dict):
        assert isinstance(new, dict) and set(old) == set(new) - {"seconds"}, path
        for key in old:
            _assert_same(old[key], new[key], f"{path}.{key}")
    elif isinstance(old, list):
        assert isinstance(new, list) and len(old) == len(new), path
        for i, (a, b) in enumerate(zip(old, new)):
            _assert_same(a, b, f"{path}[{i}]")
    elif isinstance(old, float) and isinstance(new, (float, int)) and not isinstance(new, bool):
        assert new == pytest.approx(old, rel=1e-9, abs=1e-9), path
    else:
        assert old == new, path


@pytest.fixture(scope="module")
def before() -> dict:
    return json.loads(FIXTURE.read_text())


def test_release_report_equals_the_earlier_code(release_long, before):
    _assert_same(before["descriptive_report"], descriptive_report(release_long))


def test_release_mixed_models_equal_the_earlier_code(release_long, before):
    _assert_same(before["fit_all"], to_jsonable(me.fit_all(release_long)))


# --------------------------------------------------------------------------- α with Unsure and absent cells


def _ratings_with_gaps(seed: int, n_a: int = 40, n_p: int = 9, *, integers: bool = True):
    rng = np.random.default_rng(seed)
    values = rng.normal(50, 12, (1, n_p)) + rng.normal(0, 20, (n_a, n_p))
    values = np.clip(np.rint(values) if integers else values, 0, 100)
    unsure = rng.random(values.shape) < 0.08
    absent = ~unsure & (rng.random(values.shape) < 0.15)
    values[absent | unsure] = np.nan
    return values, unsure


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alpha_and_its_bootstrap_equal_the_package_with_unsure_and_absent_cells(seed):
    values, unsure = _ratings_with_gaps(seed)
    m = RatingsMatrix.from_frame(long_frame(values, unsure=unsure))
    assert m.n_unsure == int(unsure.sum())
    package = krippendorff.alpha(reliability_data=m.values, level_of_measurement="interval")
    assert agreement.krippendorff_alpha(m) == pytest.approx(package, abs=1e-12)
    ci = agreement.krippendorff_alpha_ci(m, n_boot=30, seed=seed)
    domain, counts = agreement._value_counts(m)
    idx = np.random.default_rng(seed).integers(0, counts.shape[0], size=(30, counts.shape[0]))
    direct = [krippendorff.alpha(value_counts=counts[row], value_domain=domain) for row in idx]
    assert (ci["ci_low"], ci["ci_high"]) == pytest.approx(tuple(np.percentile(direct, [2.5, 97.5])), abs=1e-12)


# --------------------------------------------------------------------------- groups


def _kappa_x_by_definition(values: np.ndarray, member: np.ndarray) -> float:
    """κx written out: mean over prompts rated by both sides of the mean squared member–other difference,
    over the same mean across any two of those prompts."""
    inside, outside = values[member], values[~member]
    rated = [(inside[:, j], outside[:, j]) for j in range(values.shape[1])]
    rated = [(a[np.isfinite(a)], b[np.isfinite(b)]) for a, b in rated]
    rated = [(a, b) for a, b in rated if len(a) and len(b)]
    d_o = np.mean([np.mean((a[:, None] - b[None, :]) ** 2) for a, b in rated])
    a = np.concatenate([a for a, _ in rated])
    b = np.concatenate([b for _, b in rated])
    d_e = np.mean((a[:, None] - b[None, :]) ** 2)
    return 1.0 - d_o / d_e


def _group_test_by_definition(values, labels, *, n_perm, seed, min_group_size):
    """The permutation test written out: the package's α and κx by definition, one labelling at a time."""
    labels = np.asarray(labels, dtype=object)
    names, sizes = np.unique(labels, return_counts=True)
    order = np.argsort(-sizes, kind="stable")
    names, sizes = names[order], sizes[order]
    tested = names[sizes >= min_group_size]
    codes = np.array([list(names).index(v) for v in labels])
    weights = sizes[sizes >= min_group_size] / sizes[sizes >= min_group_size].sum()

    def differences(code_row):
        out = []
        for name in tested:
            member = code_row == list(names).index(name)
            alpha = krippendorff.alpha(reliability_data=values[member], level_of_measurement="interval")
            out.append(alpha - _kappa_x_by_definition(values, member))
        return np.array(out)

    observed = differences(codes)
    stat = float(np.sum(weights * observed))
    rng = np.random.default_rng(seed)
    exceed, exceed_all = np.zeros(len(tested)), 0
    for _ in range(n_perm):
        perm = differences(rng.permuted(codes))
        exceed += perm >= observed - 1e-12
        exceed_all += float(np.sum(weights * perm)) >= stat - 1e-12
    return observed, (1 + exceed) / (1 + n_perm), (1 + exceed_all) / (1 + n_perm), stat


@pytest.mark.parametrize("integers", [True, False])
def test_group_agreement_equals_the_test_written_out(integers):
    values, unsure = _ratings_with_gaps(5, n_a=24, n_p=7, integers=integers)
    labels = ["a"] * 10 + ["b"] * 8 + ["c"] * 6
    labels = list(np.random.default_rng(3).permutation(labels))
    df = long_frame(values, unsure=unsure, G=labels)
    table = agreement.group_agreement(df, column="G", n_perm=40, seed=11, min_group_size=6).set_index("group")
    observed, p_values, p_all, stat = _group_test_by_definition(values, labels, n_perm=40, seed=11, min_group_size=6)
    assert table.loc[["a", "b", "c"], "difference"].to_numpy() == pytest.approx(observed, abs=1e-10)
    assert table.loc[["a", "b", "c"], "p_value"].to_numpy() == pytest.approx(p_values)
    assert table.attrs["overall"]["statistic"] == pytest.approx(stat, abs=1e-10)
    assert table.attrs["overall"]["p_value"] == pytest.approx(p_all)


def test_single_precision_group_sums_are_exact():
    values, _ = _ratings_with_gaps(7, n_a=700, n_p=12)
    mask = np.isfinite(values)
    sums = agreement._GroupSums(values, mask)
    assert sums.dtype == np.float32  # integer ratings
    sums.rows = 256  # several blocks of annotators, as a study of many thousands would use
    onehot = (np.random.default_rng(0).random((9, 700)) < 0.3).astype(np.float32)
    m, s, q = sums.of(onehot)
    centre = float(np.rint(np.nanmean(values)))
    x = np.where(mask, values - centre, 0.0)
    exact = onehot.astype(float)
    assert np.array_equal(m, exact @ mask) and np.array_equal(s, exact @ x) and np.array_equal(q, exact @ (x * x))
    fractional = agreement._GroupSums(values + 0.25, mask)
    assert fractional.dtype == np.float64  # not integers: no single precision


def test_group_agreements_equal_one_column_at_a_time():
    values, unsure = _ratings_with_gaps(9, n_a=30, n_p=6)
    rng = np.random.default_rng(1)
    columns = {
        "G": list(rng.choice(["x", "y", "z"], 30)),
        "H": list(rng.choice(["u", "v"], 30)),
        "K": [None, " "] + list(rng.choice(["p", "q"], 28)),  # two unlabelled: other permutations
    }
    df = long_frame(values, unsure=unsure, **columns)
    m = RatingsMatrix.from_frame(df, annotator_columns=list(columns))
    together = agreement.group_agreements(m, columns=list(columns), n_perm=60, seed=4)
    for column in columns:
        alone = agreement.group_agreement(m, column=column, n_perm=60, seed=4)
        assert together[column].equals(alone)
        assert together[column].attrs["overall"] == alone.attrs["overall"]


# --------------------------------------------------------------------------- mixed models


def _many_annotators(seed: int, n_a: int = 1200, n_p: int = 8):
    rng = np.random.default_rng(seed)
    a = np.repeat(np.arange(n_a), n_p)
    p = np.tile(np.arange(n_p), n_a)
    keep = rng.random(len(a)) > 0.1  # annotators with 4–8 ratings: a few distinct counts
    a, p = a[keep], p[keep]
    x = rng.normal(size=(n_p, 2))[p]
    y = 50 + x @ [3.0, -2.0] + rng.normal(0, 8, n_a)[a] + rng.normal(0, 6, n_p)[p] + rng.normal(0, 15, len(a))
    return pd.DataFrame(x, columns=["f1", "f2"]), y, pd.DataFrame({"annotator": a, "prompt": p})


def test_pooled_deviance_equals_the_direct_one():
    x, y, groups = _many_annotators(0)
    columns = me.RowColumns.from_frame(x)
    codes = [groups["annotator"].to_numpy(), groups["prompt"].to_numpy()]
    products = me._cross_products(y, columns, codes, [1200, 8])
    cp = me._select(products, [0, 1, 2])
    assert cp.by_count is not None and len(cp.by_count["n"]) <= 5
    direct = me._Cross(**{**cp.__dict__, "by_count": None})
    for theta in ([0.5, 0.5], [0.01, 2.0], [1.3, 0.2]):
        for reml in (True, False):
            pooled_dev, pooled = me._profiled(np.array(theta), cp, reml, want=True)
            direct_dev, plain = me._profiled(np.array(theta), direct, reml, want=True)
            assert pooled_dev == pytest.approx(direct_dev, rel=1e-12)
            assert pooled["w"] == pytest.approx(plain["w"], rel=1e-9)
            assert pooled["prss"] == pytest.approx(plain["prss"], rel=1e-12)


def test_fit_with_pooling_agrees_with_the_direct_fit_and_its_r2_with_the_rows(monkeypatch):
    x, y, groups = _many_annotators(1, n_a=1000, n_p=5)
    fit = me.CrossedRandomInterceptsLM().fit(x, y, groups)
    assert fit.fixed_variance_ == pytest.approx(float(np.var(fit.fixed_fitted_)), rel=1e-9)
    monkeypatch.setattr(me, "_pool_by_count", lambda cp: None)
    direct = me.CrossedRandomInterceptsLM().fit(x, y, groups)
    # the same likelihood; the optimizer stops within its tolerance of the same point
    assert fit.llf_ == pytest.approx(direct.llf_, abs=1e-6)
    assert fit.params_.to_numpy() == pytest.approx(direct.params_.to_numpy(), rel=1e-6)
    assert fit.bse_.to_numpy() == pytest.approx(direct.bse_.to_numpy(), rel=1e-4)


def test_slope_sums_from_the_cell_table_equal_the_row_sums():
    rng = np.random.default_rng(2)
    design = me.Design(
        y=np.zeros(0),
        annotator=rng.integers(0, 30, 400),
        prompt=rng.integers(0, 12, 400),  # repeated (annotator, prompt) cells count twice, as rows do
        groups=None,
        features=pd.DataFrame(rng.normal(size=(12, 3))),
        traits=pd.DataFrame(index=range(30)),
    )
    r = rng.normal(size=400)
    counts = np.bincount(design.annotator, minlength=30).astype(float)
    sxy, sxx = me._annotator_slope_sums(design, r, counts)
    f_rows = design.features.to_numpy()[design.prompt]
    sums = np.zeros((30, 3))
    np.add.at(sums, design.annotator, f_rows)
    centred = f_rows - (sums / np.maximum(counts, 1)[:, None])[design.annotator]
    ref_xy, ref_xx = np.zeros((30, 3)), np.zeros((30, 3))
    np.add.at(ref_xy, design.annotator, centred * r[:, None])
    np.add.at(ref_xx, design.annotator, centred**2)
    assert sxy == pytest.approx(ref_xy, abs=1e-12) and sxx == pytest.approx(ref_xx, abs=1e-12)
    assert math.isfinite(float(sxx.sum()))
