"""Shared data for the science tests: the release as a long frame."""

import pandas as pd
import pytest

from benchmark.science.release import RELEASE_DIR, release_read


@pytest.fixture(scope="session")
def release_long() -> pd.DataFrame:
    return release_read(RELEASE_DIR).long()
