"""The production topology's files, checked without Docker: docker-compose.yaml against the Compose
specification's JSON schema, every reference inside it (services, volumes, variables, ports, connections,
databases, bucket, pools, queues), the Dockerfile's inputs, and the placeholders of .env.example.

tests/data/compose-spec.json is schema/compose-spec.json of github.com/compose-spec/compose-spec at commit
170098ba07d9f53c383a41bfd4c5166b0a4529a6 (2026-06-23), vendored unchanged.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import importlib
import importlib.util
import json
import os
import re
import shlex
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
PLACEHOLDER = "change-me"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|KEY")

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
    expected = {
        "postgres",
        "redis",
        "minio",
        "minio-init",
        "mlflow",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "airflow-worker-gpu",
    }
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


def published_ports(service: dict[str, Any]) -> set[int]:
    """Ports the service's container listens on, as its ``ports`` and ``expose`` declare them."""
    ports = {int(str(entry).split(":")[-1].split("/")[0]) for entry in service.get("ports", [])}
    return ports | {int(entry) for entry in service.get("expose", [])}


def test_host_ports_are_not_published_twice(services):
    host_ports = [str(entry).split(":")[0] for service in services.values() for entry in service.get("ports", [])]
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
    }
    for key, definition in definitions.items():
        monkeypatch.setenv(key, json.dumps(definition))

    from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper
    from airflow.sdk import BaseHook
    from feast import RepoConfig

    from airflow_mlops.hooks import FeastHook, LakeHook, MlflowHook

    bucket = services["minio-init"]["environment"]["MLOPS_BUCKET"]
    assert LakeHook().get_conn().uri == f"s3://{bucket}/lake"
    lake_aws_conn = definitions["AIRFLOW_CONN_MLOPS_STORAGE"]["extra"]["aws_conn_id"]
    aws = AwsConnectionWrapper(BaseHook.get_connection(lake_aws_conn))
    assert (aws.conn_type, aws.endpoint_url) == ("aws", "http://minio:9000")
    assert aws.aws_access_key_id == services["minio"]["environment"]["MINIO_ROOT_USER"]
    assert aws.aws_secret_access_key == services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]

    assert MlflowHook().get_conn().tracking_uri == "http://mlflow:5000"
    allowed_hosts = next(arg for arg in services["mlflow"]["command"] if arg.startswith("--allowed-hosts="))
    assert "mlflow:5000" in allowed_hosts.split("=", 1)[1].split(","), "the MLflow server would refuse the workers"

    feast = RepoConfig(**FeastHook().repo_config())  # Feast's own models check every store's settings
    assert (feast.registry.registry_type, feast.online_store.type) == ("sql", "redis")
    assert feast.offline_store.aws_conn_id == lake_aws_conn


def test_databases_and_bucket_referenced_are_created(services):
    init_sql = (ROOT / "deploy" / "postgres" / "init-databases.sql").read_text()
    created = {services["postgres"]["environment"]["POSTGRES_DB"], *re.findall(r"CREATE DATABASE (\w+);", init_sql)}
    bucket = services["minio-init"]["environment"]["MLOPS_BUCKET"]
    texts = [str(value) for service in services.values() for value in service.get("environment", {}).values()]
    texts += [
        arg for service in services.values() if isinstance(service.get("command"), list) for arg in service["command"]
    ]
    databases = {
        urlsplit(url).path.strip("/") for text in texts for url in re.findall(r"postgres[\w+]*://[^\s\"',]+", text)
    }
    buckets = {urlsplit(url).netloc for text in texts for url in re.findall(r"s3://[^\s\"',]+", text)}
    assert databases == {"airflow", "mlflow", "feast"} and databases <= created
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
