"""The recruitment link is rate-limited per client: new annotators only, never someone resuming."""

import uuid

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from annotation.models import Annotator
from annotation.services import recruitment
from tests.annotation import test_take_flow as flow
from tests.annotation.test_take_flow import link

pytestmark = pytest.mark.django_db

study = flow.study  # the flow tests' fixture

CLIENT = "203.0.113.7"


def pid(i: int) -> str:
    return f"burst{i:019d}"


@pytest.fixture
def limited(settings):
    settings.RECRUITMENT_RATE_LIMIT = "3/10m"
    settings.BEHIND_PROXY = False


def arrive(client, study, i, ip=CLIENT, **headers):
    return type(client)().get(link(study, pid(i)), REMOTE_ADDR=ip, **headers)


def test_new_annotators_per_client_are_limited_with_429_and_retry_after(client, study, limited):
    for i in range(3):
        assert arrive(client, study, i).status_code == 302
    refused = arrive(client, study, 3)
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 600
    page = refused.content.decode()
    assert 'data-reason="rate-limited"' in page and "Too many people have joined from your network" in page
    assert "Please try again in" in page
    assert Annotator.objects.count() == 3
    # Another client is counted on its own.
    assert arrive(client, study, 4, ip="198.51.100.20").status_code == 302


def test_a_resuming_annotator_is_never_limited(client, study, limited):
    first = type(client)()
    first.get(link(study, pid(0)), REMOTE_ADDR=CLIENT)
    for i in range(1, 3):
        arrive(client, study, i)
    assert arrive(client, study, 99).status_code == 429
    for _ in range(5):  # the same person again, from the same address, in any browser
        again = type(client)().get(link(study, pid(0)), REMOTE_ADDR=CLIENT)
        assert again.status_code == 302 and "consent" in again["Location"]


def test_forwarded_for_is_ignored_unless_behind_a_proxy(client, study, limited, settings):
    for i in range(3):
        arrive(client, study, i, HTTP_X_FORWARDED_FOR=f"10.0.0.{i}")
    # Not behind a proxy: the header is the client's to forge, so it changes nothing.
    assert arrive(client, study, 3, HTTP_X_FORWARDED_FOR="10.9.9.9").status_code == 429
    settings.BEHIND_PROXY = True
    proxy = "192.0.2.1"
    for i in range(10, 13):  # behind our proxy: the address it appended (the last one) is the client
        assert arrive(client, study, i, ip=proxy, HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.7").status_code == 302
    forged = arrive(client, study, 13, ip=proxy, HTTP_X_FORWARDED_FOR="5.6.7.8, 198.51.100.7")
    assert forged.status_code == 429  # a forged first entry does not make a new client
    assert arrive(client, study, 14, ip=proxy, HTTP_X_FORWARDED_FOR="198.51.100.8").status_code == 302


def test_ipv6_clients_are_counted_per_64_network(client, study, limited):
    for i in range(3):
        assert arrive(client, study, i, ip=f"2001:db8:1:2::{i + 1:x}").status_code == 302
    assert arrive(client, study, 3, ip="2001:db8:1:2:ffff::9").status_code == 429
    assert arrive(client, study, 4, ip="2001:db8:1:3::1").status_code == 302


def test_refusals_before_creation_are_not_counted(client, study, limited):
    from annotation.models import Study

    Study.objects.filter(pk=study.pk).update(recruitment_study_id="st999")
    for i in range(5):
        assert arrive(client, study, i).status_code == 403  # the link is for another study
    Study.objects.filter(pk=study.pk).update(recruitment_study_id="")
    assert arrive(client, study, 5).status_code == 302


@pytest.mark.parametrize(
    "text,expected", [("20/10m", (20, 600)), ("5/s", (5, 1)), ("100/1h", (100, 3600)), ("3/2d", (3, 172800))]
)
def test_rate_setting_is_parsed(text, expected):
    assert recruitment.rate_parse(text) == expected


@pytest.mark.parametrize("text", ["", "20", "x/10m", "20/10y", "0/1m", "20/0m"])
def test_a_bad_rate_setting_is_refused_clearly(text):
    with pytest.raises(ImproperlyConfigured, match="RECRUITMENT_RATE_LIMIT"):
        recruitment.rate_parse(text)


def test_the_configured_cache_holds_the_counters(client, study, limited, settings):
    """The project's own cache setting (not the tests' per-test cache): the database cache table is
    created by `migrate`, and counters live there (or in Redis when REDIS_URL is set)."""
    from config import settings as project

    settings.CACHES = project.CACHES
    backend = project.CACHES["default"]["BACKEND"]
    if backend.endswith("DatabaseCache"):
        assert project.CACHES["default"]["LOCATION"] in connection.introspection.table_names()
    ip = f"198.18.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"  # fresh, in case the cache is shared
    for i in range(3):
        assert arrive(client, study, i, ip=ip).status_code == 302
    assert arrive(client, study, 3, ip=ip).status_code == 429
    from django.core.cache.backends.db import DatabaseCache
    from django.core.cache.backends.redis import RedisCache

    assert isinstance(caches["default"], (DatabaseCache, RedisCache))


def test_a_bad_rate_setting_stops_manage_py_check(settings):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.RECRUITMENT_RATE_LIMIT = "lots"
    with pytest.raises(SystemCheckError, match="annotation.E001"):
        call_command("check")


class DownCache:
    """A cache whose server is gone: every call raises, as redis-py does when Redis is unreachable."""

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise ConnectionError("cache down")

        return fail


def test_the_link_still_lets_people_in_when_the_cache_is_down(client, study, limited, monkeypatch, caplog):
    monkeypatch.setattr(recruitment, "cache", DownCache())
    answers = [arrive(client, study, i).status_code for i in range(5)]  # over the limit of 3: not counted
    assert answers == [302] * 5
    assert Annotator.objects.filter(study=study).count() == 5
    assert "recruitment rate limit skipped: cache unavailable" in caplog.text
