"""Shared data for the science tests: the release as a long frame."""
from pathlib import Path

import pandas as pd
import pytest

from benchmark.science.release import load_release_long

RELEASE_DIR = Path(__file__).resolve().parents[2] / "benchmark" / "datasets" / "pluriharms"


@pytest.fixture(scope="session")
def release_long() -> pd.DataFrame:
    return load_release_long(RELEASE_DIR)

