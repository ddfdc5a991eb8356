"""deploy/: the Dockerfile, compose file, Kubernetes manifests and NATS Helm values are valid
(yamllint, check-jsonschema's vendored compose-spec, kubernetes-validate's bundled schemas —
all offline) and agree with each other and with the code (agents, drain times, ports)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

from bus.coordinator import CoordinatorOptions
from bus.deploy.discover import agents_in_dir
from bus.runtime.options import ServeOptions

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30.0"
METRICS_PORT = 9100
LINT = YamlLintConfig(
    "{extends: default, rules: {line-length: {max: 100}, document-start: disable,"
    " truthy: {check-keys: false}}}"
)
OWN_YAML = [
    DEPLOY / "compose.yaml",
    DEPLOY / "helm" / "nats-values.yaml",
    *sorted((DEPLOY / "k8s").glob("*.yaml")),
]


@pytest.fixture(scope="module")
def reference_agents() -> set[str]:
    return set(agents_in_dir(ROOT / "agents"))


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _deployments() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in _load_all(path):
            if doc["kind"] == "Deployment":
                found[doc["metadata"]["name"].removeprefix("bus-")] = doc
    return found


@pytest.mark.parametrize("path", OWN_YAML, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_passes_yamllint(path: Path) -> None:
    problems = list(linter.run(path.read_text(), LINT, str(path)))
    assert problems == [], [f"{p.line}:{p.column} {p.message}" for p in problems]


@pytest.mark.parametrize("path", sorted((DEPLOY / "k8s").glob("*.yaml")), ids=lambda p: p.name)
def test_kubernetes_manifests_match_the_api_schemas(path: Path) -> None:
    for doc in _load_all(path):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_compose_file_matches_the_compose_spec() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(DEPLOY / "compose.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_every_agent_on_its_own_credential(reference_agents: set[str]) -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    bus_services = {n for n, s in services.items() if s.get("image", "").startswith("agent-bus")}
    assert bus_services == reference_agents | {"coordinator"}
    assert {"nats", "prometheus", "grafana"} <= set(services)
    assert services["coordinator"]["deploy"]["replicas"] == 2
    for name in bus_services:
        service = services[name]
        assert service["volumes"] == [f"./rendered/credentials/{name}:/etc/bus:ro"]
        assert service["environment"]["BUS_CONFIG"] == f"/etc/bus/{name}.toml"
        assert service["environment"]["BUS_METRICS_PORT"] == str(METRICS_PORT)
        assert "replicas" in service["deploy"]
        if name != "coordinator":
            assert service["command"][:2] == ["agent", "run"]
    scraped = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    names = {
        n for job in scraped["scrape_configs"] for sd in job["dns_sd_configs"] for n in sd["names"]
    }
    assert names == bus_services


def test_a_deployment_per_agent_and_for_the_coordinator(reference_agents: set[str]) -> None:
    deployments = _deployments()
    assert set(deployments) == reference_agents | {"coordinator"}
    for name, doc in deployments.items():
        pod = doc["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        drain = (CoordinatorOptions() if name == "coordinator" else ServeOptions()).drain_timeout
        assert pod["terminationGracePeriodSeconds"] > drain
        assert pod["securityContext"]["runAsNonRoot"] is True
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["ports"] == [{"name": "metrics", "containerPort": METRICS_PORT}]
        assert set(container["resources"]["requests"]) == {"cpu", "memory"}
        assert pod["volumes"][0]["secret"]["secretName"] == f"bus-{name}"
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["BUS_CONFIG"] == f"/etc/bus/{name}.toml"


def test_compose_stop_grace_covers_the_drain() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    for name, service in services.items():
        if "stop_grace_period" in service:
            drain = (
                CoordinatorOptions() if name == "coordinator" else ServeOptions()
            ).drain_timeout
            assert int(service["stop_grace_period"].removesuffix("s")) > drain


def test_helm_values_make_a_3_node_jetstream_cluster_with_the_rendered_accounts() -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "nats-values.yaml").read_text())
    config = values["config"]
    assert config["cluster"] == {"enabled": True, "replicas": 3}
    assert config["jetstream"]["enabled"] is True
    include = config["merge"]["$include"]
    (mount,) = [p["value"] for p in values["container"]["patch"]]
    (volume,) = [p["value"] for p in values["podTemplate"]["patch"]]
    assert Path("/etc/nats-config", include).resolve() == Path(mount["mountPath"], "auth.conf")
    assert volume["name"] == mount["name"]
    assert volume["secret"]["secretName"] == "bus-nats-auth"


def test_dockerfile_is_slim_non_root_and_runs_bus() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    assert 'RUN pip install ".[agents]"' in lines
    assert "USER 10001:10001" in lines
    assert 'ENTRYPOINT ["bus"]' in lines
    for copied in ("bus", "agents", "topologies"):
        assert any(line.startswith(f"COPY {copied} ") for line in lines)
        assert (ROOT / copied).is_dir()
