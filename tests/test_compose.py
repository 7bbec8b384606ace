"""docker-compose.yml scales out (`docker compose up --scale web=3 --scale worker=2 --scale worker-short=2`):
nothing a scaled service declares may clash between its replicas. Read as data here; `docker compose config`
checks the syntax (docs/scaling.md says what was run where)."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCALED = ("web", "worker", "worker-short")


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_scaled_services_take_no_host_port_or_fixed_name(services):
    for name in SCALED:
        assert "ports" not in services[name], f"{name}: a fixed host port breaks --scale {name}=2"
        assert "container_name" not in services[name], name
    assert services["web"]["expose"] == ["8000"]


def test_one_proxy_publishes_the_port_and_finds_every_web_container(services):
    published = [name for name, service in services.items() if service.get("ports")]
    assert published == ["proxy"]
    mount = next(v for v in services["proxy"]["volumes"] if v.endswith(":/etc/nginx/nginx.conf:ro"))
    conf = (ROOT / mount.split(":")[0]).read_text()
    # Resolved per request through Docker's DNS (not once at start), so a later --scale is picked up.
    assert re.search(r"resolver 127\.0\.0\.11 valid=\d+s", conf)
    assert "set $web http://web:8000;" in conf and "proxy_pass $web;" in conf
    # The app trusts the proxy's X-Forwarded-For only with BEHIND_PROXY.
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in conf and services["web"]["environment"]["BEHIND_PROXY"]


def test_the_proxy_never_logs_a_query_string():
    conf = (ROOT / "docker" / "nginx.conf").read_text()
    formats = re.findall(r"log_format\s+\w+\s+((?:'[^']*'\s*)+);", conf)
    assert formats and all("$request " not in f and "$args" not in f and "$request_uri" not in f for f in formats)
    assert all(line.split()[-1].rstrip(";") in {"pluriharms", "off"} for line in re.findall(r"access_log[^;]*;", conf))


def test_each_worker_replica_has_its_own_name(services):
    for name in ("worker", "worker-short"):
        assert re.search(r" -n \w+@%h\b", services[name]["command"]), name  # %h: the container's host name


def test_migrations_run_once_before_web_and_workers(services):
    assert "migrate" not in services["web"]["command"]
    assert services["migrate"]["command"] == "python manage.py migrate --noinput"
    for name in (*SCALED, "beat"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name


def test_the_replica_file_gives_web_and_workers_the_replica_url():
    replica = yaml.safe_load((ROOT / "docker-compose.replica.yml").read_text())["services"]
    for name in SCALED:
        assert replica[name]["environment"]["DATABASE_REPLICA_URL"].startswith("postgres://"), name
    script = replica["postgres"]["volumes"][0].split(":")[0]
    assert "replication" in (ROOT / script).read_text()
