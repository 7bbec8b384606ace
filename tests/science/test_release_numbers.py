"""The reader parses number cells column-wise (arrow) and sends only unusual cells through the exact
per-cell rules; both must read every cell alike."""

import numpy as np
import pandas as pd

from benchmark.science.release.read import _number_block, _numbers

CELLS = [
    "50",
    "50.0",
    "0",
    "100",
    "12.5",
    "0050",
    "007.250",
    "999999999.999999",
    "1234567890",
    "1.1234567",
    "",
    " ",
    " 50",
    "50 ",
    "\t7",
    "50.",
    ".5",
    "+5",
    "-3",
    "5e1",
    "1E2",
    "nan",
    "NaN",
    "NA",
    "na",
    "inf",
    "-inf",
    "Infinity",
    "high",
    "1,5",
    "٣",
    "１２",
    "0x10",
    "1_000",
    "5\u00a0",
    "\u20035",
]


def test_block_reads_every_cell_as_the_per_cell_rules_do():
    frame = pd.DataFrame({"a": CELLS, "b": list(reversed(CELLS))}, dtype=str)
    values, bad = _number_block(frame, ["a", "b"])
    for j, column in enumerate(["a", "b"]):
        expected_values, expected_bad = _numbers(frame[column])
        assert np.array_equal(values[:, j], expected_values, equal_nan=True), column
        assert np.array_equal(bad[:, j], expected_bad), column
    assert values[0, 0] == 50.0 and values[7, 0] == 999999999.999999 and not bad[:, 0][:10].any()


def test_plain_decimals_parse_to_the_same_double_as_python():
    rng = np.random.default_rng(7)
    cells = [
        f"{i}.{f:0{d}d}" for i, f, d in zip(rng.integers(0, 10**9, 2000), rng.integers(0, 10**6, 2000), [6] * 2000)
    ]
    values, bad = _number_block(pd.DataFrame({"x": cells}, dtype=str), ["x"])
    assert not bad.any()
    assert values[:, 0].tolist() == [float(c) for c in cells]
