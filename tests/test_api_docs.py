"""The API docs page loads everything from this site (ASVS 14.2.3): Swagger UI from
drf-spectacular-sidecar's static files, its initializer as a script file (not inline, for the CSP)."""

from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


class References(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.inline_scripts = 0
        self._in_script_without_src = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href", "action", "data"):
            if attrs.get(name):
                self.urls.append((tag, name, attrs[name]))
        if tag == "script" and not attrs.get("src"):
            self._in_script_without_src = True

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script_without_src = False

    def handle_data(self, data):
        if self._in_script_without_src and data.strip():
            self.inline_scripts += 1


def references(html: str) -> References:
    parser = References()
    parser.feed(html)
    return parser


@pytest.fixture
def docs(client, researcher):
    client.force_login(researcher)
    response = client.get(reverse("api-docs"))
    assert response.status_code == 200
    return response


def test_docs_page_references_no_other_host(docs):
    found = references(docs.content.decode())
    base = "http://testserver" + reverse("api-docs")
    scripts = [url for tag, _, url in found.urls if tag == "script"]
    assert len(scripts) >= 3  # the bundle, the standalone preset and the initializer
    for tag, attribute, url in found.urls:
        absolute = urlsplit(urljoin(base, url))
        assert absolute.scheme == "http" and absolute.netloc == "testserver", (tag, attribute, url)


def test_docs_page_has_no_inline_script_and_its_initializer_is_served_by_the_site(client, docs):
    found = references(docs.content.decode())
    assert found.inline_scripts == 0
    initializer = next(url for tag, _, url in found.urls if tag == "script" and "script" in urlsplit(url).query)
    response = client.get(initializer)
    assert response.status_code == 200 and response["Content-Type"].startswith("application/javascript")
    assert reverse("schema") in response.content.decode()  # it points Swagger UI at our schema
    for tag, _, url in found.urls:
        if tag == "script" and url != initializer:
            assert "drf-spectacular-sidecar" in url or "swagger-ui-dist" in url, url
