"""The plotting library the site serves (issue 10): plotly.js's partial "basic" bundle (scatter, bar, pie),
with a gzip copy that WhiteNoise sends with Content-Encoding: gzip; every figure the site draws uses only
the trace types in that bundle, and the full 4.8 MB bundle is gone."""

import gzip
import re
from pathlib import Path

import pytest
from django.conf import settings

VENDOR = Path(settings.BASE_DIR) / "static" / "vendor"
BUNDLE = VENDOR / "plotly-basic.min.js"
BUNDLE_TRACES = {"scatter", "bar", "pie"}  # the README of npm's plotly.js-basic-dist-min


def test_bundle_is_the_partial_one_and_its_gzip_copy_matches_it():
    source = BUNDLE.read_bytes()
    assert source.startswith(b"/**\n* plotly.js (basic - minified) v4.1.1")
    assert 1_000_000 < len(source) < 1_500_000 and not (VENDOR / "plotly.min.js").exists()
    assert gzip.decompress((VENDOR / "plotly-basic.min.js.gz").read_bytes()) == source


def test_every_trace_type_in_the_code_is_in_the_bundle():
    """Trace dicts are written by hand ("type": "bar"); a histogram or heatmap here would draw nothing."""
    found = set()
    for folder in ("annotation", "benchmark", "jobs"):
        for path in (Path(settings.BASE_DIR) / folder).rglob("*.py"):
            text = path.read_text()
            if '"data"' in text or "plotly" in text.lower():
                # a trace dict: its "type" is followed, in the same dict, by a key only traces have
                found |= set(re.findall(r'"type": "(\w+)",\s*\n?\s*"(?:mode|x|y|name|orientation)"', text))
    assert {"scatter", "bar"} <= found and found <= BUNDLE_TRACES, found


@pytest.mark.django_db
def test_bundle_is_served_compressed_by_the_site(client):
    """WhiteNoise (in development from the source folder, in production from collectstatic) picks the .gz."""
    url = settings.STATIC_URL + "vendor/plotly-basic.min.js"
    response = client.get(url, HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip" and response["Vary"] == "Accept-Encoding"
    body = b"".join(response.streaming_content)
    assert len(body) < 450_000 and gzip.decompress(body) == BUNDLE.read_bytes()
    plain = client.get(url)
    assert "Content-Encoding" not in plain and int(plain["Content-Length"]) == BUNDLE.stat().st_size
