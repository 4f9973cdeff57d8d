"""The production topology's files, checked without Docker: docker-compose.yaml against the Compose
specification's JSON schema, every reference inside it (services, volumes, variables, ports, connections,
databases, bucket, pools, queues), the Dockerfile's inputs, and the placeholders of .env.example.

Then its security, one property per test: MLflow listens on loopback only and behind its basic-auth app,
with the admin login from .env that Airflow's connection carries; MinIO's root keys stay in minio and
minio-init, which gives Airflow, MLflow and data producers a user each whose policy (deploy/minio) allows
only their prefixes (producers: uploads under lake/raw/); no service logs in to Postgres as the superuser
(deploy/postgres); and each secret reaches only the services that need it.

tests/data/compose-spec.json is schema/compose-spec.json of github.com/compose-spec/compose-spec at commit
170098ba07d9f53c383a41bfd4c5166b0a4529a6 (2026-06-23), vendored unchanged.
"""

from __future__ import annotations

import base64
import binascii
import configparser
import fnmatch
import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from cryptography.fernet import Fernet

from tests.conftest import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
LOCAL_SETTINGS = ROOT / "deploy" / "airflow" / "airflow_local_settings.py"
POSTGRES_INIT = ROOT / "deploy" / "postgres" / "init-databases.sh"
MINIO_POLICIES = ROOT / "deploy" / "minio"
MLFLOW_AUTH_INI = ROOT / "deploy" / "mlflow" / "basic_auth.ini"
PIPELINES = ROOT / "include" / "pipelines"
AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-worker-gpu",
)
PLACEHOLDER = "change-me"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|KEY|TOKEN")

# Compose interpolation: $$ escapes, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error},
# ${VAR:+alt}, ${VAR+alt} and $VAR; any other "$" is an error, as it is for docker compose.
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<invalid>))"
)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as docker compose reads a .env file (no quoting is used in ours)."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{path.name}:{number}: not KEY=VALUE: {line!r}"
        assert key not in values, f"{path.name}:{number}: {key} defined twice"
        values[key] = value
    return values


def interpolate(value: Any, env: dict[str, str], references: list[tuple[str, str | None]]) -> Any:
    """``value`` with every string interpolated from ``env``; each variable use is appended to ``references``."""
    if isinstance(value, dict):
        return {key: interpolate(item, env, references) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env, references) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["invalid"] is not None:
            raise ValueError(f"invalid interpolation at {match.string[match.start() :][:30]!r}")
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"] or ""
        references.append((name, op))
        current = env.get(name)
        present = current is not None and (current != "" or not (op or "").startswith(":"))
        if op in (":-", "-"):
            return current if present else arg  # type: ignore[return-value]
        if op in (":?", "?"):
            if not present:
                raise ValueError(f"required variable {name} is missing: {arg}")
            return current  # type: ignore[return-value]
        if op in (":+", "+"):
            return arg if present else ""
        return current or ""

    return _INTERPOLATION.sub(substitute, value)


def load_compose(env: dict[str, str]) -> tuple[dict[str, Any], list[tuple[str, str | None]]]:
    references: list[tuple[str, str | None]] = []
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), env, references), references


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose(example_env: dict[str, str]) -> dict[str, Any]:
    """docker-compose.yaml as docker compose sees it with .env.example as its .env."""
    return load_compose(example_env)[0]


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]


def test_compose_file_follows_the_compose_specification(compose):
    assert schema_errors(compose) == []


def test_schema_check_catches_a_misspelt_key(compose):
    broken = json.loads(json.dumps(compose))
    broken["services"]["airflow-worker"]["healthchek"] = broken["services"]["airflow-worker"].pop("healthcheck")
    assert any("healthchek" in error for error in schema_errors(broken))


def test_every_variable_comes_from_env_example_or_has_a_default(example_env):
    _, references = load_compose(example_env)
    undefined = sorted({name for name, op in references if op not in (":-", "-") and name not in example_env})
    assert undefined == [], f"docker-compose.yaml uses variables that .env.example does not define: {undefined}"
    unused = sorted(set(example_env) - {name for name, _ in references})
    assert unused == [], f".env.example defines variables docker-compose.yaml never uses: {unused}"


def test_missing_secret_stops_compose_with_a_message(example_env):
    without_jwt = {key: value for key, value in example_env.items() if key != "AIRFLOW_JWT_SECRET"}
    with pytest.raises(ValueError, match=r"AIRFLOW_JWT_SECRET.*set AIRFLOW_JWT_SECRET in \.env"):
        load_compose(without_jwt)


def test_the_issue_s_services_are_all_there(services):
    expected = {"postgres", "redis", "minio", "minio-init", "mlflow", "prediction", "prometheus", "alertmanager"}
    expected |= set(AIRFLOW_SERVICES)
    assert expected <= set(services)
    gpu = services["airflow-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def test_dependencies_exist_and_their_conditions_can_be_met(services):
    for name, service in services.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert not services[target].get("profiles") or service.get("profiles"), (
                f"{name} always starts but depends on {target}, which only starts with a profile"
            )
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy: no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{name} waits for {target} to exit; it restarts"
            else:
                pytest.fail(f"{name} -> {target}: unexpected condition {condition}")


def test_long_running_services_have_healthchecks(services):
    long_running = [name for name, service in services.items() if service.get("restart") == "always"]
    assert [name for name in long_running if "healthcheck" not in services[name]] == []


def test_volumes_are_declared_used_and_bind_mounts_exist(compose, services):
    declared = set(compose["volumes"])
    used = set()
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).resolve().exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in declared, f"{name} uses volume {source}, not declared under volumes:"
                used.add(source)
    assert declared == used, f"declared but unused volumes: {sorted(declared - used)}"


def port_bindings(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each ``ports`` entry, in the short syntax
    ``[ADDRESS:]HOST:CONTAINER[/PROTOCOL]``; no address means every interface, 0.0.0.0."""
    bindings = []
    for entry in service.get("ports", []):
        assert isinstance(entry, str), f"use the short syntax, as a string: {entry!r}"
        *address, host, container = entry.split("/")[0].rsplit(":", 2)
        bindings.append((address[0] if address else "0.0.0.0", int(host), int(container)))
    return bindings


def published_ports(service: dict[str, Any]) -> set[int]:
    """Ports the service's container listens on, as its ``ports`` and ``expose`` declare them."""
    ports = {container for _, _, container in port_bindings(service)}
    return ports | {int(entry) for entry in service.get("expose", [])}


def test_host_ports_are_not_published_twice(services):
    host_ports = [host for service in services.values() for _, host, _ in port_bindings(service)]
    assert len(host_ports) == len(set(host_ports)), host_ports


_ENDPOINT = re.compile(r"(?:[a-z0-9+]+://)?(?:[^@/\s\"']+@)?(?P<host>[a-z][a-z0-9-]*):(?P<port>\d+)")


def endpoints(key: str, value: str) -> list[tuple[str, int]]:
    """The host:port pairs a setting names: in URLs and Redis strings, and a connection's host and port."""
    found = [(match["host"], int(match["port"])) for match in _ENDPOINT.finditer(value)]
    if key.startswith("AIRFLOW_CONN_"):
        connection = json.loads(value)
        if "host" in connection:
            found.append((connection["host"], int(connection["port"])))
    return found


def test_addresses_in_the_environment_reach_a_service_port(services):
    checked = 0
    for name, service in services.items():
        for key, value in service.get("environment", {}).items():
            for host, port in endpoints(key, str(value)):
                assert host in services, f"{name}: {key} points at {host}:{port}, which is no service"
                assert port in published_ports(services[host]), f"{name}: {key} uses {host}:{port}, not a port of it"
                checked += 1
    assert checked >= 10  # the connections, the Celery URLs and the stores' URIs


def import_dotted(path: str) -> Any:
    """The object a dotted setting such as ``AIRFLOW__CORE__EXECUTOR`` names, as Airflow imports it."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def common_airflow_env(services: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The environment of every service that runs an Airflow component."""
    return {name: service["environment"] for name, service in services.items() if name.startswith("airflow-")}


def test_airflow_components_share_config_secrets_and_connections(services):
    environments = common_airflow_env(services)
    shared = [
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW_CONN_MLOPS_STORAGE",
        "AIRFLOW_CONN_AWS_DEFAULT",
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        "AIRFLOW_CONN_FEAST_DEFAULT",
    ]
    reference = environments["airflow-apiserver"]
    assert reference["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    import_dotted("airflow.providers.celery.executors.celery_executor.CeleryExecutor")  # the provider imports
    assert "imports" in import_dotted(reference["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"])
    assert reference["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    for name, environment in environments.items():
        differing = [key for key in shared if environment.get(key) != reference[key]]
        assert differing == [], f"{name} differs from airflow-apiserver in {differing}"


def test_connections_are_valid_json_for_their_hooks(services, monkeypatch):
    environment = services["airflow-worker"]["environment"]
    definitions = {key: json.loads(value) for key, value in environment.items() if key.startswith("AIRFLOW_CONN_")}
    assert set(definitions) == {
        "AIRFLOW_CONN_MLOPS_STORAGE",
        "AIRFLOW_CONN_AWS_DEFAULT",
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        "AIRFLOW_CONN_FEAST_DEFAULT",
        "AIRFLOW_CONN_MLOPS_METRICS",
    }
    for key, definition in definitions.items():
        monkeypatch.setenv(key, json.dumps(definition))

    from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper
    from airflow.sdk import BaseHook
    from feast import RepoConfig

    from airflow_mlops.hooks import FeastHook, LakeHook, MlflowHook

    minio_init = services["minio-init"]["environment"]
    bucket = minio_init["MLOPS_BUCKET"]
    assert LakeHook().get_conn().uri == f"s3://{bucket}/lake"
    lake_aws_conn = definitions["AIRFLOW_CONN_MLOPS_STORAGE"]["extra"]["aws_conn_id"]
    aws = AwsConnectionWrapper(BaseHook.get_connection(lake_aws_conn))
    assert (aws.conn_type, aws.endpoint_url) == ("aws", "http://minio:9000")
    # the MinIO user minio-init creates for Airflow, not the root user
    assert aws.aws_access_key_id == minio_init["MINIO_AIRFLOW_USER"]
    assert aws.aws_secret_access_key == minio_init["MINIO_AIRFLOW_PASSWORD"]

    mlflow = MlflowHook().get_conn()
    assert mlflow.tracking_uri == "http://mlflow:5000"
    server = services["mlflow"]["environment"]
    assert (mlflow.username, mlflow.password) == (
        server["MLFLOW_AUTH_ADMIN_USERNAME"],
        server["MLFLOW_AUTH_ADMIN_PASSWORD"],
    )
    allowed_hosts = next(arg for arg in services["mlflow"]["command"] if arg.startswith("--allowed-hosts="))
    assert "mlflow:5000" in allowed_hosts.split("=", 1)[1].split(","), "the MLflow server would refuse the workers"

    feast = RepoConfig(**FeastHook().repo_config())  # Feast's own models check every store's settings
    assert (feast.registry.registry_type, feast.online_store.type) == ("sql", "redis")
    assert feast.offline_store.aws_conn_id == lake_aws_conn

    from airflow_mlops.ui.app import scrape_token

    assert scrape_token() == "change-me-metrics-token"  # the token Prometheus sends (see the next test)


def test_prometheus_scrapes_the_metrics_with_the_token_and_loads_valid_rules(services, example_env, tmp_path):
    from airflow_mlops.links import UI_PREFIX
    from tests.conftest import prometheus_tool

    prometheus = services["prometheus"]
    assert "metrics_token" in prometheus["secrets"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == f"{UI_PREFIX}/metrics"
    assert job["static_configs"] == [{"targets": ["airflow-apiserver:8080"]}]
    assert job["authorization"]["credentials_file"] == "/run/secrets/metrics_token"
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    # promtool reads the token file and the rules the config names: check a copy where they exist
    (tmp_path / "token").write_text(example_env["MLOPS_METRICS_TOKEN"])
    job["authorization"]["credentials_file"] = str(tmp_path / "token")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "alerts.yml").write_text((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    for tool, *args in [
        ("promtool", "check", "config", str(tmp_path / "prometheus.yml")),
        ("amtool", "check-config", str(ROOT / "deploy" / "alertmanager" / "alertmanager.yml")),
    ]:
        checked = subprocess.run([prometheus_tool(tool), *args], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def service_texts(service: dict[str, Any]) -> list[str]:
    """The strings of a service that can name an endpoint: its environment values and its command."""
    texts = [str(value) for value in service.get("environment", {}).values()]
    command = service.get("command", [])
    return texts + (command if isinstance(command, list) else [command])


def postgres_urls(services: dict[str, Any]) -> list[tuple[str, str]]:
    """(service, URL) of every Postgres URL a service connects with: in its environment, its command,
    and the MLflow server's auth configuration file."""
    urls = [
        (name, url)
        for name, service in services.items()
        for text in service_texts(service)
        for url in re.findall(r"postgres[\w+]*://[^\s\"',]+", text)
    ]
    return [*urls, ("mlflow", mlflow_auth_config(services["mlflow"])["database_uri"])]


def init_script_databases() -> dict[str, str]:
    """Database -> owning role, as deploy/postgres/init-databases.sh leaves them."""
    return dict(re.findall(r"^ALTER DATABASE (\w+) OWNER TO (\w+);$", POSTGRES_INIT.read_text(), re.M))


def test_databases_and_bucket_referenced_are_created(services):
    script = POSTGRES_INIT.read_text()
    created = {
        services["postgres"]["environment"]["POSTGRES_DB"],
        *re.findall(r"'CREATE DATABASE (\w+)' WHERE NOT EXISTS", script),
    }
    assert set(init_script_databases()) == created
    bucket = services["minio-init"]["environment"]["MLOPS_BUCKET"]
    texts = [text for service in services.values() for text in service_texts(service)]
    databases = {urlsplit(url).path.strip("/") for _, url in postgres_urls(services)}
    buckets = {urlsplit(url).netloc for text in texts for url in re.findall(r"s3://[^\s\"',]+", text)}
    assert databases == {"airflow", "mlflow", "mlflow_auth", "feast"} and databases <= created
    assert buckets == {bucket}


def test_workers_serve_the_default_and_gpu_queues(services):
    from airflow.configuration import conf

    def queues(name: str) -> set[str]:
        argv = shlex.split(services[name]["command"])
        return set(argv[argv.index("--queues") + 1].split(","))

    assert queues("airflow-worker") == {conf.get("operators", "default_queue")}
    assert queues("airflow-worker-gpu") == {"gpu"}


def load_local_settings() -> Any:
    loader = importlib.util.spec_from_file_location("mlops_local_settings", LOCAL_SETTINGS)
    assert loader is not None and loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


def test_pool_policy_names_real_operators_and_pools_airflow_init_creates(services):
    from airflow_mlops.operators import features, monitoring, training

    policy = load_local_settings()
    unknown = [
        name for name in policy.POOL_OF_OPERATOR if not any(hasattr(m, name) for m in (features, monitoring, training))
    ]
    assert unknown == [], f"airflow_local_settings.py routes operators that do not exist: {unknown}"
    init_script = services["airflow-init"]["command"][-1]
    created = set(re.findall(r"airflow pools set (\w+)", init_script))
    assert set(policy.POOL_OF_OPERATOR.values()) == created


def test_airflow_applies_the_pool_policy_when_parsing_the_dags():
    code = """
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=DAGS)
print(json.dumps({f"{d}.{t.task_id}": t.pool for d in bag.dags for t in bag.dags[d].tasks}))
""".replace("DAGS", repr(str(ROOT / "dags")))
    search_path = [str(LOCAL_SETTINGS.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(search_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    pools = json.loads(out.stdout.strip().splitlines()[-1])
    assert pools["churn_features.publish_features"] == "feast"
    assert pools["churn_training.build_training_set"] == "feast"
    assert pools["churn_training.challenger_gate"] == "mlflow"
    assert pools["churn_monitoring.score_batch"] == "mlflow"
    assert pools["churn_training.train_model"] == "default_pool"


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "exceptions (!) are not understood by this check"
    return patterns


def ignored_by_docker(path: str, patterns: list[str]) -> bool:
    parts = Path(path).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pattern) or (pattern.startswith("**/") and fnmatch.fnmatch(part, pattern[3:]))
        for pattern in patterns
        for prefix, part in zip(prefixes, parts, strict=True)
    )


def test_dockerfile_inputs_exist_and_reach_the_build_context():
    patterns = dockerignore_patterns()
    text = DOCKERFILE.read_text()
    for name, default in re.findall(r"^ARG (\w+)=(\S+)$", text, re.M):  # as docker build expands them
        text = text.replace("${" + name + "}", default)
    copies = [shlex.split(line)[1:] for line in text.splitlines() if line.startswith("COPY ")]
    sources = [source for args in copies for source in [a for a in args if not a.startswith("--")][:-1]]
    assert {"pyproject.toml", "constraints/constraints-3.11.txt", "src", "plugins", "dags", "include"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
        assert not ignored_by_docker(source, patterns), f"Dockerfile copies {source}, but .dockerignore drops it"
    assert ignored_by_docker(".env", patterns) and ignored_by_docker(".venv/bin/python", patterns)


def test_image_is_the_constrained_airflow_version():
    pinned = re.search(r"^apache-airflow==(\S+)$", (ROOT / "constraints" / "constraints-3.11.txt").read_text(), re.M)
    assert pinned is not None
    text = DOCKERFILE.read_text()
    assert f"ARG AIRFLOW_VERSION={pinned[1]}\n" in text
    assert "FROM apache/airflow:slim-${AIRFLOW_VERSION}-python${PYTHON_VERSION}" in text
    assert re.search(r"pip install .*--constraint constraints/constraints-\$\{PYTHON_VERSION\}\.txt", text)
    # a regular install, like any provider; torch for the gpu queue's torch_mlp training
    assert '"apache-airflow==${AIRFLOW_VERSION}" ".[production,torch]"' in text
    assert "ARG PYTHON_VERSION=3.11\n" in text
    assert "ENV AIRFLOW__CORE__DAGS_FOLDER=${MLOPS_PROJECT}/dags" in text


def is_real_looking_secret(value: str) -> bool:
    """A value with the shape of a generated secret: a Fernet key, or a long hex or base64 string."""
    if re.fullmatch(r"[0-9a-fA-F]{24,}|[A-Za-z0-9+/_=-]{32,}", value) and not value.startswith(PLACEHOLDER):
        return True
    try:
        return len(base64.urlsafe_b64decode(value.encode())) == 32
    except (binascii.Error, ValueError):
        return False


def test_env_example_holds_placeholders_not_secrets(example_env):
    secrets = {key: value for key, value in example_env.items() if SECRET_NAME.search(key)}
    assert set(secrets) >= {"AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD"}
    assert set(secrets) >= set(SERVICE_CREDENTIALS.values()) | {"MLFLOW_SECRET_KEY"}
    assert [key for key, value in secrets.items() if not value.startswith(PLACEHOLDER)] == []
    assert [key for key, value in example_env.items() if is_real_looking_secret(value)] == []
    assert is_real_looking_secret(Fernet.generate_key().decode()) and is_real_looking_secret(os.urandom(16).hex())
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def run_env_check(services: dict[str, Any], overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    check = services["env-check"]
    script = check["command"][-1]
    env = {"PATH": os.environ["PATH"], **check["environment"], **overrides}
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env=env)


def test_env_check_refuses_placeholders_before_stores_initialise(services, example_env):
    secrets = [key for key in example_env if SECRET_NAME.search(key)]
    assert set(secrets) <= set(services["env-check"]["environment"]), "env-check must see every secret"
    for store in ("postgres", "minio"):
        assert services[store]["depends_on"]["env-check"] == {"condition": "service_completed_successfully"}

    refused = run_env_check(services, {})
    assert refused.returncode == 1
    assert all(key in refused.stderr for key in secrets), refused.stderr
    accepted = run_env_check(services, {key: os.urandom(16).hex() for key in secrets})
    assert accepted.returncode == 0, accepted.stderr


# --- Security of the production topology ------------------------------------------------------------------
# Each credential of .env.example for a client of a store, by what it is: one login per client and store.
SERVICE_CREDENTIALS = {
    "postgres role airflow": "AIRFLOW_DB_PASSWORD",
    "postgres role mlflow": "MLFLOW_DB_PASSWORD",
    "postgres role feast": "FEAST_DB_PASSWORD",
    "minio user for airflow": "MINIO_AIRFLOW_PASSWORD",
    "minio user for mlflow": "MINIO_MLFLOW_PASSWORD",
    "minio user for producers": "MINIO_PRODUCER_PASSWORD",
    "mlflow admin": "MLFLOW_ADMIN_PASSWORD",
}
LOOPBACK = {"127.0.0.1", "::1", "[::1]", "localhost"}
# What a client may do to the objects under its prefixes: read, write, delete, and finish or abort uploads.
OBJECT_ACTIONS = {
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
}


def mounted_at(service: dict[str, Any], source: Path) -> str:
    """Where a service mounts a file or folder of the repository."""
    for mount in service.get("volumes", []):
        host, target, *_ = mount.split(":")
        if host.startswith(".") and (ROOT / host).resolve() == source.resolve():
            return str(target)
    raise AssertionError(f"{source.relative_to(ROOT)} is not mounted")


def mlflow_auth_config(mlflow: dict[str, Any]) -> configparser.SectionProxy:
    """The ``[mlflow]`` section of the basic-auth configuration the MLflow server reads."""
    assert mlflow["environment"]["MLFLOW_AUTH_CONFIG_PATH"] == mounted_at(mlflow, MLFLOW_AUTH_INI)
    parser = configparser.ConfigParser()
    assert parser.read(MLFLOW_AUTH_INI) == [str(MLFLOW_AUTH_INI)]
    return parser["mlflow"]


def publicly_bound(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [binding for binding in port_bindings(service) if binding[0] not in LOOPBACK]


def test_port_check_tells_loopback_from_every_interface():
    assert publicly_bound({"ports": ["5000:5000", "0.0.0.0:5001:5000", "127.0.0.1:5002:5000"]}) == [
        ("0.0.0.0", 5000, 5000),
        ("0.0.0.0", 5001, 5000),
    ]


def test_mlflow_is_not_published_beyond_this_host(services):
    assert publicly_bound(services["mlflow"]) == [], "MLflow must listen on 127.0.0.1 only"
    assert {container for _, _, container in port_bindings(services["mlflow"])} <= {5000}


def test_only_minio_s3_api_is_published_beyond_this_host(services):
    """Producers upload to the S3 API, with keys that can write raw/ only; every UI (Airflow, MLflow, the
    MinIO console with its root login) is for this host, or an SSH tunnel to it."""
    public = {name: publicly_bound(service) for name, service in services.items() if publicly_bound(service)}
    assert public == {"minio": [("0.0.0.0", 9000, 9000)]}
    assert ("127.0.0.1", 9001, 9001) in port_bindings(services["minio"])
    assert ("127.0.0.1", 8080, 8080) in port_bindings(services["airflow-apiserver"])


def test_mlflow_runs_behind_its_basic_auth_app(services):
    from importlib.metadata import entry_points

    from mlflow.environment_variables import (
        MLFLOW_AUTH_ADMIN_PASSWORD,
        MLFLOW_AUTH_ADMIN_USERNAME,
        MLFLOW_FLASK_SERVER_SECRET_KEY,
    )

    mlflow = services["mlflow"]
    assert "--app-name=basic-auth" in mlflow["command"]
    assert "basic-auth" in {point.name for point in entry_points(group="mlflow.app")}
    config = mlflow_auth_config(mlflow)
    assert config["authorization_function"] == "mlflow.server.auth:authenticate_request_basic_auth"
    # Users an admin adds read, nothing more, unless granted; no password is kept in the file.
    assert config["default_permission"] == "READ"
    assert "admin_password" not in config
    environment = mlflow["environment"]
    for variable in (MLFLOW_AUTH_ADMIN_USERNAME, MLFLOW_AUTH_ADMIN_PASSWORD, MLFLOW_FLASK_SERVER_SECRET_KEY):
        assert environment.get(variable.name), f"the MLflow server needs {variable.name}"
    # its health check is the one request the auth app answers without a login
    assert mlflow["healthcheck"]["test"][-1] == "http://localhost:5000/health"


def test_mlflow_admin_login_comes_from_env_and_airflow_uses_it(example_env):
    """Changing MLFLOW_ADMIN_USER / MLFLOW_ADMIN_PASSWORD in .env changes both the admin the MLflow server
    creates and the login in every Airflow component's mlflow_default connection."""
    env = {
        **example_env,
        "MLFLOW_ADMIN_USER": "admin-" + os.urandom(4).hex(),
        "MLFLOW_ADMIN_PASSWORD": os.urandom(16).hex(),
    }
    services = load_compose(env)[0]["services"]
    server = services["mlflow"]["environment"]
    assert (server["MLFLOW_AUTH_ADMIN_USERNAME"], server["MLFLOW_AUTH_ADMIN_PASSWORD"]) == (
        env["MLFLOW_ADMIN_USER"],
        env["MLFLOW_ADMIN_PASSWORD"],
    )
    for name in AIRFLOW_SERVICES:
        connection = json.loads(services[name]["environment"]["AIRFLOW_CONN_MLFLOW_DEFAULT"])
        assert (connection["login"], connection["password"]) == (
            env["MLFLOW_ADMIN_USER"],
            env["MLFLOW_ADMIN_PASSWORD"],
        ), name
    without = {key: value for key, value in example_env.items() if key != "MLFLOW_ADMIN_PASSWORD"}
    with pytest.raises(ValueError, match="MLFLOW_ADMIN_PASSWORD"):
        load_compose(without)


@pytest.mark.xfail(
    importlib.util.find_spec("flask_wtf") is None,
    reason="mlflow's basic-auth app needs Flask-WTF (mlflow[auth]), which the production extra and the "
    "constraints do not install yet: the image's mlflow server would not start",
    raises=ImportError,
)
def test_the_image_s_packages_can_run_the_basic_auth_app():
    import mlflow.server.auth as auth

    assert auth.is_unprotected_route("/health")
    assert not auth.is_unprotected_route("/api/2.0/mlflow/registered-models/alias")
    assert not auth.is_unprotected_route("/api/2.0/mlflow/model-versions/create")


@pytest.fixture
def distinct_env(example_env: dict[str, str]) -> dict[str, str]:
    """.env.example with a value of its own for each user name and secret, so a value tells its variable."""
    credential = re.compile(r"USER|PASSWORD|SECRET|FERNET|KEY")
    return {
        key: f"{key.lower().replace('_', '-')}-{os.urandom(6).hex()}" if credential.search(key) else value
        for key, value in example_env.items()
    }


def holders(services: dict[str, Any], value: str) -> set[str]:
    """The services whose configuration (environment, command, ...) contains ``value``."""
    return {name for name, service in services.items() if value in json.dumps(service)}


def test_each_credential_reaches_only_the_services_that_need_it(distinct_env):
    """env-check sees every secret to refuse placeholders, and exits; beyond it, a credential reaches the
    store it opens and its one client. The root keys stay in MinIO and minio-init, the superuser in Postgres."""
    services = load_compose(distinct_env)[0]["services"]
    airflow = set(AIRFLOW_SERVICES)
    expected = {
        "MINIO_ROOT_USER": {"minio", "minio-init"},
        "MINIO_ROOT_PASSWORD": {"minio", "minio-init", "env-check"},
        "POSTGRES_USER": {"postgres"},
        "POSTGRES_PASSWORD": {"postgres", "env-check"},
        "AIRFLOW_DB_PASSWORD": {"postgres", "env-check", *airflow},
        "MLFLOW_DB_PASSWORD": {"postgres", "env-check", "mlflow"},
        "FEAST_DB_PASSWORD": {"postgres", "env-check", "prediction", *airflow},
        "MINIO_AIRFLOW_USER": {"minio-init", *airflow},
        "MINIO_AIRFLOW_PASSWORD": {"minio-init", "env-check", *airflow},
        "MINIO_MLFLOW_USER": {"minio-init", "mlflow"},
        "MINIO_MLFLOW_PASSWORD": {"minio-init", "env-check", "mlflow"},
        "MINIO_PRODUCER_USER": {"minio-init"},
        "MINIO_PRODUCER_PASSWORD": {"minio-init", "env-check"},
        "MLFLOW_ADMIN_USER": {"mlflow", "prediction", *airflow},
        "MLFLOW_ADMIN_PASSWORD": {"mlflow", "env-check", "prediction", *airflow},
        "MLFLOW_SECRET_KEY": {"mlflow", "env-check"},
        "AIRFLOW_JWT_SECRET": {"env-check", *airflow},
    }
    reached = {variable: holders(services, distinct_env[variable]) for variable in expected}
    assert reached == expected


def test_no_service_but_minio_and_minio_init_gets_the_minio_root_keys(distinct_env):
    references = re.compile(r"\$\{?MINIO_ROOT_(USER|PASSWORD)\b")
    raw = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    using = {name for name, service in raw.items() if references.search(json.dumps(service))}
    assert using == {"minio", "minio-init", "env-check"}  # env-check: only the password, to refuse a placeholder
    services = load_compose(distinct_env)[0]["services"]
    assert "MINIO_ROOT_USER" not in services["env-check"]["environment"]
    root_user, root_password = distinct_env["MINIO_ROOT_USER"], distinct_env["MINIO_ROOT_PASSWORD"]
    for name, service in services.items():
        if name not in {"minio", "minio-init"}:
            assert root_user not in json.dumps(service), f"{name} has the MinIO root user"
        for key, value in service.get("environment", {}).items():
            if name not in {"minio", "minio-init", "env-check"}:
                assert root_password not in value, f"{name}: {key} holds the MinIO root password"


def run_minio_init(
    services: dict[str, Any], tmp_path: Path, attached: str | None = None
) -> tuple[list[list[str]], dict[str, Any]]:
    """Run minio-init's script with a stand-in ``mc`` that records each call and keeps each policy it is
    given: the calls, and the policies by name, as MinIO would receive them. With ``attached`` (a restart),
    ``mc`` refuses every attach as MinIO does for a policy already attached, and lists ``attached`` as
    each user's policies."""
    init = services["minio-init"]
    assert init["entrypoint"] == ["/bin/bash", "-c"], "the script uses bash substitutions"
    # the container's /tmp first: the repository itself may live under /tmp (a CI checkout)
    script = init["command"][-1].replace('"/tmp/', f'"{tmp_path}/')
    script = script.replace(mounted_at(init, MINIO_POLICIES), str(MINIO_POLICIES))
    (tmp_path / "bin").mkdir(parents=True)
    (tmp_path / "policies").mkdir()
    mc = tmp_path / "bin" / "mc"
    mc.write_text(
        "#!/bin/bash\n"
        'printf "%s\\0" "$@" >> "$MC_LOG"; printf "\\n" >> "$MC_LOG"\n'
        'if [ "$1 $2 $3" = "admin policy create" ]; then cp "$6" "$MC_POLICIES/$5.json"; fi\n'
        'if [ -n "$MC_ATTACHED" ] && [ "$1 $2 $3" = "admin policy attach" ]; then exit 1; fi\n'
        'if [ "$1 $2 $3" = "admin user info" ]; then echo "PolicyName: $MC_ATTACHED"; fi\n'
    )
    mc.chmod(0o755)
    log = tmp_path / "mc.log"
    env = {
        **init["environment"],
        "PATH": f"{mc.parent}{os.pathsep}{os.environ['PATH']}",
        "MC_LOG": str(log),
        "MC_POLICIES": str(tmp_path / "policies"),
        "MC_ATTACHED": attached or "",
    }
    subprocess.run([shutil.which("bash") or "/bin/bash", "-c", script], env=env, check=True)
    calls = [line.rstrip("\0").split("\0") for line in log.read_text().splitlines()]
    policies = {path.stem: json.loads(path.read_text()) for path in (tmp_path / "policies").iterdir()}
    return calls, policies


def test_minio_init_gives_each_client_a_user_with_its_own_policy(services, tmp_path):
    calls, policies = run_minio_init(services, tmp_path)
    env = services["minio-init"]["environment"]
    bucket = env["MLOPS_BUCKET"]
    assert calls[0] == ["alias", "set", "lake", "http://minio:9000", env["MINIO_ROOT_USER"], env["MINIO_ROOT_PASSWORD"]]
    assert ["mb", "--ignore-existing", f"lake/{bucket}"] in calls
    users = {}
    for client in ("airflow", "mlflow", "producer"):
        user, password = env[f"MINIO_{client.upper()}_USER"], env[f"MINIO_{client.upper()}_PASSWORD"]
        assert ["admin", "user", "add", "lake", user, password] in calls
        assert ["admin", "policy", "attach", "lake", f"mlops-{client}", "--user", user] in calls
        users[client] = user
    assert len({*users.values(), env["MINIO_ROOT_USER"]}) == 4, "one user each, none of them root"
    assert set(policies) == {"mlops-airflow", "mlops-mlflow", "mlops-producer"}
    assert all(call[:3] != ["admin", "policy", "attach"] or call[4] in policies for call in calls)
    assert not any("${" in json.dumps(policy) for policy in policies.values()), "placeholder left in a policy"
    assert services["mlflow"]["environment"]["AWS_ACCESS_KEY_ID"] == users["mlflow"]


def test_minio_init_runs_again_on_a_restart(services, tmp_path):
    """MinIO refuses to attach a policy already attached; the restart still succeeds, but only if it is."""
    run_minio_init(services, tmp_path / "restart", attached="mlops-airflow mlops-mlflow mlops-producer")
    with pytest.raises(subprocess.CalledProcessError):
        run_minio_init(services, tmp_path / "missing", attached="someone-elses-policy")


def allowed(policy: dict[str, Any]) -> list[tuple[set[str], set[str], dict[str, Any]]]:
    """(actions, resources, condition) of each statement, all of which must allow."""
    assert policy["Version"] == "2012-10-17"
    statements = []
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
        statements.append((set(statement["Action"]), set(statement["Resource"]), statement.get("Condition", {})))
    assert not any("*" in action for actions, _, _ in statements for action in actions), "no wildcard actions"
    return statements


def object_grants(policy: dict[str, Any], bucket: str) -> dict[str, set[str]]:
    """Object resource (``bucket/prefix*``, bucket left out) -> the actions allowed on it."""
    grants: dict[str, set[str]] = {}
    for actions, resources, _ in allowed(policy):
        for resource in resources:
            assert resource.startswith(f"arn:aws:s3:::{bucket}"), f"{resource} is not in the bucket"
            if resource != f"arn:aws:s3:::{bucket}":
                grants.setdefault(resource.removeprefix(f"arn:aws:s3:::{bucket}/"), set()).update(actions)
    return grants


def lake_prefix(services: dict[str, Any]) -> str:
    root = json.loads(services["airflow-worker"]["environment"]["AIRFLOW_CONN_MLOPS_STORAGE"])["extra"]["root"]
    return urlsplit(root).path.strip("/")


def test_producer_policy_allows_uploads_under_raw_only(services, tmp_path):
    _, policies = run_minio_init(services, tmp_path)
    bucket = services["minio-init"]["environment"]["MLOPS_BUCKET"]
    raw = f"{lake_prefix(services)}/raw/"
    producer = policies["mlops-producer"]
    assert object_grants(producer, bucket) == {
        f"{raw}*": {"s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}
    }
    for actions, resources, condition in allowed(producer):
        if f"arn:aws:s3:::{bucket}" in resources:
            assert actions <= {"s3:ListBucket", "s3:GetBucketLocation"}, actions
            if "s3:ListBucket" in actions:  # listing, but only what lies under raw/
                prefixes = condition["StringLike"]["s3:prefix"]
                assert prefixes and all(prefix.startswith(raw) for prefix in prefixes), prefixes
    # every pipeline's raw partitions and labels land where producers can write
    for path in sorted(PIPELINES.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())["data"]
        for key in ("raw_path", "labels_path"):
            assert f"{lake_prefix(services)}/{data[key].strip('/')}/".startswith(raw), f"{path.name}: {key}"


def test_airflow_and_mlflow_policies_stay_in_their_prefixes(services, tmp_path):
    _, policies = run_minio_init(services, tmp_path)
    bucket = services["minio-init"]["environment"]["MLOPS_BUCKET"]
    worker = services["airflow-worker"]["environment"]
    logs = urlsplit(worker["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"]).path.strip("/")
    airflow = object_grants(policies["mlops-airflow"], bucket)
    assert set(airflow) == {f"{lake_prefix(services)}/*", f"{logs}/*"}, "Airflow: the lake and task logs"
    artifacts = next(arg for arg in services["mlflow"]["command"] if arg.startswith("--artifacts-destination="))
    mlflow = object_grants(policies["mlops-mlflow"], bucket)
    assert set(mlflow) == {urlsplit(artifacts.split("=", 1)[1]).path.strip("/") + "/*"}, "MLflow: its artifacts"
    for grants in (airflow, mlflow):
        assert all(actions <= OBJECT_ACTIONS for actions in grants.values()), grants


def init_script_roles() -> dict[str, str]:
    """Role -> the environment variable init-databases.sh sets its password from, for each role it makes
    a login that is no superuser and cannot create roles or databases."""
    script = POSTGRES_INIT.read_text()
    variables = dict(re.findall(r"^\\getenv (\w+) (\w+)$", script, re.M))
    created = set(re.findall(r"'CREATE ROLE (\w+)' WHERE NOT EXISTS", script))
    roles = {}
    for role, options, variable in re.findall(r"^ALTER ROLE (\w+) WITH ([A-Z ]+) PASSWORD :'(\w+)';$", script, re.M):
        assert {"LOGIN", "NOSUPERUSER", "NOCREATEDB", "NOCREATEROLE", "NOBYPASSRLS"} <= set(options.split()), role
        roles[role] = variables[variable]
    assert set(roles) == created
    return roles


def test_no_service_connects_to_postgres_as_the_superuser(services):
    postgres = services["postgres"]["environment"]
    roles = init_script_roles()
    owners = init_script_databases()
    assert roles and postgres["POSTGRES_USER"] not in roles
    for variable in roles.values():
        assert postgres[variable], f"the postgres service needs {variable} for its init script"
    assert mounted_at(services["postgres"], POSTGRES_INIT).startswith("/docker-entrypoint-initdb.d/")
    urls = postgres_urls(services)
    assert {name for name, _ in urls} == {"mlflow", "prediction", *AIRFLOW_SERVICES}
    for name, url in urls:
        parts = urlsplit(url)
        database = parts.path.strip("/")
        assert parts.username != postgres["POSTGRES_USER"], f"{name} logs in as the superuser: {url}"
        assert parts.username in roles and owners[database] == parts.username, f"{name}: {url}"
        # the role's password: in the URL, or (the MLflow auth store) from libpq's PGPASSWORD
        password = parts.password or services[name]["environment"].get("PGPASSWORD")
        assert password == postgres[roles[parts.username]], f"{name}: wrong password for {parts.username}"
    assert postgres["POSTGRES_PASSWORD"] not in json.dumps([url for _, url in urls])


def postgres_bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path)] if on_path else sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1].parent if candidates and shutil.which("psql") else None


def test_init_script_makes_owning_roles_that_are_not_superusers():
    """The script itself, in a throwaway Postgres cluster that checks passwords: each role logs in with the
    password from its variable, is no superuser, owns its databases and cannot connect to the others'; run
    again with new passwords (a rotation), it sets them; without one it stops."""
    import pwd
    import tempfile

    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl, psql) here")
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, with no postgres user to run the server as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root, without runuser")
        run_as = ["runuser", "-u", "postgres", "--"]
    home = Path(tempfile.mkdtemp(prefix="mlops-pg-"))  # short: a socket path has a length limit
    if run_as:
        os.chown(home, owner.pw_uid, owner.pw_gid)
    superuser, data = "mlops", home / "data"
    env = {"PATH": os.environ["PATH"], "PGHOST": str(home), "PGPORT": str(20000 + os.getpid() % 20000)}

    def run(*argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
        assignments = [f"{key}={value}" for key, value in {**env, **extra}.items()]
        return subprocess.run([*run_as, "env", *assignments, *argv], capture_output=True, text=True, check=False)

    def sql(query: str, user: str = superuser, database: str = "postgres", password: str = "") -> str:
        out = run("psql", "-XAtq", "-U", user, "-d", database, "-c", query, PGPASSWORD=password)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    roles = init_script_roles()
    try:
        assert run(str(bin_dir / "initdb"), "-D", str(data), "-U", superuser).returncode == 0
        # the superuser without a password on the socket, as the image's init scripts run; roles with one
        (data / "pg_hba.conf").write_text(f"local all {superuser} trust\nlocal all all scram-sha-256\n")
        options = f"-k {home} -c listen_addresses='' -p {env['PGPORT']}"
        started = run(str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(home / "log"), "-o", options, "start")
        assert started.returncode == 0, started.stderr
        sql("CREATE DATABASE airflow")  # as the postgres image does for POSTGRES_DB
        for _ in ("create", "rotate"):
            passwords = {variable: os.urandom(8).hex() for variable in roles.values()}
            done = run("bash", str(POSTGRES_INIT), POSTGRES_USER=superuser, **passwords)
            assert done.returncode == 0, done.stderr
            owners = init_script_databases()
            for database, role in owners.items():
                assert sql("SELECT current_user", role, database, passwords[roles[role]]) == role
        rows = sql(
            f"SELECT rolname, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname IN "
            f"({', '.join(repr(role) for role in roles)}) ORDER BY 1"
        )
        assert rows.splitlines() == [f"{role}|f|f|f" for role in sorted(roles)]
        found = sql(
            "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname = ANY "
            f"(ARRAY[{', '.join(repr(database) for database in owners)}])"
        )
        assert dict(line.split("|") for line in found.splitlines()) == owners
        for database, owner_role in owners.items():
            for role in set(roles) - {owner_role}:
                refused = run(
                    "psql", "-XAtq", "-U", role, "-d", database, "-c", "SELECT 1", PGPASSWORD=passwords[roles[role]]
                )
                assert refused.returncode != 0 and "CONNECT" in refused.stderr, (role, database)
        missing = run("bash", str(POSTGRES_INIT), POSTGRES_USER=superuser)
        assert missing.returncode != 0 and "_DB_PASSWORD" in missing.stderr
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(home, ignore_errors=True)


def test_env_example_has_a_login_per_client_and_store(example_env, services):
    for variable in SERVICE_CREDENTIALS.values():
        assert example_env[variable].startswith(PLACEHOLDER), variable
    users = [example_env[f"MINIO_{client}_USER"] for client in ("ROOT", "AIRFLOW", "MLFLOW", "PRODUCER")]
    assert len(set(users)) == len(users), "MinIO user names must differ"
    assert example_env["MLFLOW_ADMIN_USER"] and example_env["POSTGRES_USER"] not in init_script_roles()
    assert set(SERVICE_CREDENTIALS.values()) | {"MLFLOW_SECRET_KEY"} <= set(services["env-check"]["environment"])
