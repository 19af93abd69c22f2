"""deploy/ checked without a container engine or a cluster: every YAML parses, Kubernetes
manifests validate against the Kubernetes schemas (shipped offline by kubernetes-validate),
the compose file has the services, health checks and wiring it needs, no file holds a secret,
every AVIDENCE_* variable is a real setting with a valid value, every CLI subcommand exists,
and the alert rules only name metrics the server exports."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import click
import pytest

from avidence.server import config, signing
from avidence.server.cli import main as cli_main

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
YAML_FILES = sorted(p for p in DEPLOY.rglob("*.y*ml") if p.suffix in (".yaml", ".yml"))
TEXT_FILES = sorted(p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
# The oldest and the newest Kubernetes minor the manifests are meant for.
K8S_VERSIONS = ("1.29", "1.33")
# Commands other changes are adding right now; checked as soon as they exist.
PENDING_COMMANDS = {("worker",)}
SETTINGS_VARIABLES = {
    config.ENV_PREFIX + f.name.upper()
    for f in dataclasses.fields(config.Settings)
    if f.name != "extra"
} | {signing.ENV_PEM}


def _docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _docs(path):
            if doc.get("kind") != "Kustomization":
                out.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return out


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in _manifests() if doc["kind"] == kind}


def _compose() -> dict[str, Any]:
    document = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


# -- YAML ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", YAML_FILES, ids=_rel)
def test_every_yaml_file_parses(path: Path) -> None:
    assert _docs(path), f"{_rel(path)} holds no document"


def test_deploy_has_every_piece_of_the_layout() -> None:
    for name in (
        "Dockerfile",
        "Dockerfile.dockerignore",
        "compose.yaml",
        "avidence.env.example",
        ".env.example",
        "nginx/avidence.conf",
        "prometheus-alerts.yaml",
        "systemd/avidence-server.service",
        "systemd/avidence-worker.service",
        "k8s/kustomization.yaml",
        "k8s/migrate-job.yaml",
    ):
        assert (DEPLOY / name).is_file(), name


# -- Kubernetes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("name", "doc"), _manifests(), ids=[n for n, _ in _manifests()])
def test_k8s_manifest_matches_the_kubernetes_schema(
    name: str, doc: dict[str, Any], version: str
) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    # strict: an unknown (misspelt) field is an error, as `kubectl apply --validate=strict`.
    kubernetes_validate.validate(doc, version, strict=True)


def test_kustomization_lists_every_manifest_but_the_migration_job() -> None:
    kustomization = _docs(K8S / "kustomization.yaml")[0]
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {"migrate-job.yaml"}
    images = {image["name"] for image in kustomization["images"]}
    used = {c["image"].split(":")[0] for c in _containers()}
    assert used == images


def _pod_specs() -> dict[str, dict[str, Any]]:
    out = {}
    for _, doc in _manifests():
        if doc["kind"] in ("Deployment", "Job"):
            out[doc["metadata"]["name"]] = doc["spec"]["template"]["spec"]
    return out


def _containers() -> list[dict[str, Any]]:
    return [c for spec in _pod_specs().values() for c in spec["containers"]]


def test_k8s_has_server_worker_service_ingress_pdb_hpa_and_migration() -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]) for _, doc in _manifests()}
    for wanted in [
        ("Deployment", "avidence-server"),
        ("Deployment", "avidence-worker"),
        ("Service", "avidence"),
        ("Ingress", "avidence"),
        ("ConfigMap", "avidence-config"),
        ("PodDisruptionBudget", "avidence-server"),
        ("HorizontalPodAutoscaler", "avidence-server"),
        ("Job", "avidence-migrate"),
    ]:
        assert wanted in kinds
    assert not [k for k in kinds if k[0] == "Secret"], "secrets are created by the operator"
    namespaced = [doc for _, doc in _manifests() if doc["kind"] != "Namespace"]
    assert all(doc["metadata"].get("namespace") == "avidence" for doc in namespaced)


@pytest.mark.parametrize("name", ["avidence-server", "avidence-worker", "avidence-migrate"])
def test_k8s_pods_run_unprivileged_with_a_read_only_root(name: str) -> None:
    spec = _pod_specs()[name]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001  # the image's USER
    assert spec["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in spec["volumes"]}
    data_dir = _by_kind("ConfigMap")["avidence-config"]["data"]["AVIDENCE_DATA_DIR"]
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        # The data dir (spool, scratch) is the writable place: an emptyDir with a size limit.
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts[data_dir]]
        assert volumes[mounts[data_dir]]["emptyDir"]["sizeLimit"]


def test_k8s_server_probes_healthz_on_its_port() -> None:
    container = _pod_specs()["avidence-server"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    settings = _by_kind("ConfigMap")["avidence-config"]["data"]
    assert ports["http"] == int(settings["AVIDENCE_PORT"])
    assert settings["AVIDENCE_HOST"] == "0.0.0.0"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_k8s_secrets_are_referenced_never_written() -> None:
    for container in _containers():
        for variable in container.get("env", []):
            assert "value" not in variable, f"{variable['name']} has a literal value"
            assert variable["valueFrom"]["secretKeyRef"]["name"] == "avidence-secrets"
    server = _pod_specs()["avidence-server"]["containers"][0]
    names = {v["name"] for v in server["env"]}
    # Replicas must share one signing key; S3 and PostgreSQL credentials never in the URL.
    assert {signing.ENV_PEM, "PGPASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= names
    database = _by_kind("ConfigMap")["avidence-config"]["data"]["AVIDENCE_DATABASE"]
    assert config.redact(database) == database, "no password in the database URL"


def test_k8s_selectors_reach_the_server_pods() -> None:
    server = _by_kind("Deployment")["avidence-server"]
    labels = server["spec"]["template"]["metadata"]["labels"]
    selectors = [
        server["spec"]["selector"]["matchLabels"],
        _by_kind("Service")["avidence"]["spec"]["selector"],
        _by_kind("PodDisruptionBudget")["avidence-server"]["spec"]["selector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector.items() <= labels.items()
    worker = _by_kind("Deployment")["avidence-worker"]["spec"]["template"]["metadata"]["labels"]
    assert not selectors[1].items() <= worker.items(), "the Service must not send to workers"
    target = _by_kind("HorizontalPodAutoscaler")["avidence-server"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "avidence-server")
    assert _by_kind("HorizontalPodAutoscaler")["avidence-server"]["spec"]["minReplicas"] >= 2


def test_k8s_ingress_streams_large_bodies_to_the_service() -> None:
    ingress = _by_kind("Ingress")["avidence"]
    notes = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert notes[prefix + "proxy-body-size"] == "0"
    assert notes[prefix + "proxy-request-buffering"] == "off"
    assert notes[prefix + "proxy-http-version"] == "1.1"
    assert int(notes[prefix + "proxy-read-timeout"]) >= 600
    assert int(notes[prefix + "proxy-send-timeout"]) >= 600
    assert "non_idempotent" not in notes.get(prefix + "proxy-next-upstream", "")
    service = _by_kind("Service")["avidence"]
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == "avidence" and backend["port"]["name"] in port_names
    public = _by_kind("ConfigMap")["avidence-config"]["data"]["AVIDENCE_PUBLIC_URL"]
    assert public == f"https://{ingress['spec']['rules'][0]['host']}"


def test_k8s_settings_load_as_a_server_would() -> None:
    data = _by_kind("ConfigMap")["avidence-config"]["data"]
    settings = config.load(env=data)
    assert settings.storage == "s3" and settings.database.startswith("postgresql://")
    assert settings.embedded_worker is False  # jobs run in the worker Deployment


# -- compose ------------------------------------------------------------------------------------


def _image(spec: str) -> str:
    """An image reference with compose's `${VAR:-default}` resolved to its default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", spec)


def test_compose_has_the_services_of_a_scaled_deployment() -> None:
    services = _compose()["services"]
    assert set(services) >= {
        "postgres",
        "minio",
        "minio-setup",
        "migrate",
        "avidence",
        "worker",
        "proxy",
    }
    assert _image(services["postgres"]["image"]).startswith("postgres:16")
    assert services["avidence"]["deploy"]["replicas"] >= 2
    assert "ports" not in services["avidence"], "replicas are reached through the proxy only"
    assert services["avidence"]["command"] == ["serve"]
    assert services["worker"]["command"] == ["worker"]
    assert services["migrate"]["command"] == ["migrate"]
    for name in ("avidence", "worker"):
        needs = services[name]["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully"
        assert needs["minio-setup"]["condition"] == "service_completed_successfully"
        assert services[name]["read_only"] is True
        assert services[name]["env_file"] == ["avidence.env"]
    assert services["proxy"]["depends_on"]["avidence"]["condition"] == "service_healthy"


def test_compose_health_checks_where_something_listens() -> None:
    services = _compose()["services"]
    for name in ("postgres", "minio", "avidence", "proxy"):
        check = services[name]["healthcheck"]
        assert check.get("disable") is not True and check["test"], name
    assert "/healthz" in " ".join(services["avidence"]["healthcheck"]["test"])
    assert services["worker"]["healthcheck"] == {"disable": True}  # no HTTP in the worker


def test_compose_creates_the_bucket_with_object_lock() -> None:
    setup = _compose()["services"]["minio-setup"]
    script = "\n".join(setup["command"])
    assert re.search(r"mc mb .*--with-lock", script)
    assert _image(setup["image"]).startswith("minio/mc:")
    assert setup["restart"] == "no"
    # The bucket it creates is the one the servers use.
    assert "$$AVIDENCE_S3_BUCKET" in script and setup["env_file"] == ["avidence.env"]


def test_compose_secrets_are_required_interpolations() -> None:
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    secret_names = {"POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "S3_SECRET_KEY", signing.ENV_PEM}
    for name in secret_names:
        uses = re.findall(r"\$\{" + name + r"([^}]*)\}", text)
        assert uses, name
        assert all(u.startswith(":?") for u in uses), f"{name} must fail when unset, not default"
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", _read(DEPLOY / ".env.example"), re.M))
    assert secret_names <= documented


def test_compose_files_it_mounts_exist() -> None:
    services = _compose()["services"]
    for volume in services["proxy"]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./") and "tls" not in source:
            assert (DEPLOY / source).exists(), source
    assert (DEPLOY / "avidence.env.example").exists()  # copied to avidence.env by the operator
    ignored = (DEPLOY / ".gitignore").read_text(encoding="utf-8").split()
    assert {".env", "avidence.env", "tls/"} <= set(ignored)


def test_env_example_loads_as_valid_settings() -> None:
    env = _env_file(DEPLOY / "avidence.env.example")
    settings = config.load(env=env)
    assert settings.host == "0.0.0.0" and settings.storage == "s3"
    assert settings.public_url.startswith("https://")
    assert settings.embedded_worker is False  # jobs run in the worker service


def _env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in _read(path).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name] = value
    return out


# -- nginx ----------------------------------------------------------------------------------------


def test_nginx_streams_unlimited_bodies_to_the_replicas() -> None:
    conf = _read(DEPLOY / "nginx" / "avidence.conf")
    directives = {
        line.strip().rstrip(";")
        for line in conf.splitlines()
        if line.strip() and not line.strip().startswith("#")
    }
    for wanted in (
        "client_max_body_size 0",
        "proxy_request_buffering off",
        "proxy_http_version 1.1",
        "proxy_set_header X-Forwarded-Proto $scheme",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for",
        "proxy_set_header Host $host",
        "proxy_pass http://avidence",
    ):
        assert wanted in directives, wanted
    timeouts = dict(
        re.findall(r"^\s*(proxy_(?:read|send)_timeout)\s+(\d+)s;", conf, re.M),
    )
    assert all(int(v) >= 600 for v in timeouts.values()) and len(timeouts) == 2
    assert "non_idempotent" not in conf
    assert conf.count("{") == conf.count("}")
    assert "ssl_certificate " in conf and "listen 443 ssl" in conf


# -- no secrets, real settings, real commands ---------------------------------------------------


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


SECRET_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----\s*\n\s*[A-Za-z0-9+/]{20,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"avd_[A-Za-z0-9_-]{16,}"),  # an avidence bearer token
    re.compile(
        r"(?i)(password|passwd|secret|secret_key|access_key|token)[ \t]*[:=][ \t]*"
        r"(?![\"']?(\$|<|\.\.\.|changeme|example))[\"']?[^\s\"'(){}]{6,}(?=[\s\"']|$)"
    ),
]


@pytest.mark.parametrize("path", TEXT_FILES, ids=_rel)
def test_no_secret_is_committed(path: Path) -> None:
    text = _read(path)
    for pattern in SECRET_PATTERNS:
        found = pattern.search(text)
        assert found is None, f"{_rel(path)}: looks like a secret: {found.group(0)[:40]!r}"


def test_secret_patterns_catch_what_they_should() -> None:
    def caught(text: str) -> bool:
        return any(p.search(text) for p in SECRET_PATTERNS)

    assert caught("POSTGRES_PASSWORD=hunter2hunter2")
    assert caught("  password: s3cr3t-value")
    assert caught("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIGQx1234567890abcdefghij")
    assert not caught("POSTGRES_PASSWORD=")
    assert not caught("PGPASSWORD: ${POSTGRES_PASSWORD:?set it}")
    assert not caught('# AVIDENCE_SIGNING_KEY_PEM="-----BEGIN PRIVATE KEY-----\n# ...')


def test_every_avidence_variable_in_deploy_is_a_setting() -> None:
    used: dict[str, set[str]] = {}
    for path in TEXT_FILES:
        for name in re.findall(r"\bAVIDENCE_[A-Z0-9_]+", _read(path)):
            used.setdefault(name, set()).add(_rel(path))
    unknown = {name: files for name, files in used.items() if name not in SETTINGS_VARIABLES}
    assert not unknown, f"not settings (docs/configuration.md): {unknown}"
    assert signing.ENV_PEM in used


def _commands_in_deploy() -> dict[tuple[str, ...], set[str]]:
    """Subcommand paths (`("token", "create")`) run by deploy/ files, with where."""
    found: dict[tuple[str, ...], set[str]] = {}

    def add(words: list[str], where: str) -> None:
        path = []
        for word in words:
            if word.startswith("-") or not re.fullmatch(r"[a-z][a-z-]*", word):
                break
            path.append(word)
        if path:
            found.setdefault(tuple(path), set()).add(where)

    for path in TEXT_FILES:
        for line in _read(path).splitlines():
            if "systemctl" in line or "systemd-analyze" in line:
                continue  # unit names, not commands
            for match in re.finditer(r"\bavidence-server[ \t]+([a-z][a-z \t-]*)", line):
                add(match.group(1).split(), _rel(path))
    dockerfile = _read(DEPLOY / "Dockerfile")
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.M)
    assert cmd is not None
    add(json.loads(cmd.group(1)), "Dockerfile CMD")
    for name, service in _compose()["services"].items():
        if _image(service.get("image", "")).startswith("avidence:") and "command" in service:
            add(service["command"], f"compose {name}")
    for container in _containers():
        add(container["args"], f"k8s {container['name']}")
    return found


def _resolve(words: tuple[str, ...]) -> bool:
    command: click.Command = cli_main
    for word in words:
        if not isinstance(command, click.Group) or word not in command.commands:
            return False
        command = command.commands[word]
    return not isinstance(command, click.Group)


def test_every_cli_subcommand_used_in_deploy_exists() -> None:
    used = _commands_in_deploy()
    assert {("serve",), ("migrate",), ("worker",)} <= set(used)
    missing = {words: where for words, where in used.items() if not _resolve(words)}
    pending = {w: where for w, where in missing.items() if w in PENDING_COMMANDS}
    assert not set(missing) - set(pending), f"no such avidence-server command: {missing}"
    if pending:
        pytest.xfail(f"being added by another change: {sorted(' '.join(w) for w in pending)}")


# -- alert rules ----------------------------------------------------------------------------------


def _exported_metric_names() -> set[str]:
    from prometheus_client.registry import CollectorRegistry

    from avidence.server.metrics import Metrics

    registry: CollectorRegistry = Metrics.create().registry
    names = {sample.name for family in registry.collect() for sample in family.samples}
    names |= {family.name for family in registry.collect()}
    # Metrics registered outside Metrics (a worker's, say) are found by their literal names.
    for path in (ROOT / "server").rglob("*.py"):
        names |= set(re.findall(r"[\"'](avidence_[a-z0-9_]+)[\"']", _read(path)))
    histograms = {n[: -len("_bucket")] for n in names if n.endswith("_bucket")}
    names |= {f"{h}_{s}" for h in names - histograms for s in ("bucket", "sum", "count")}
    return names


def test_alert_rules_are_well_formed_and_name_real_metrics() -> None:
    document = _docs(DEPLOY / "prometheus-alerts.yaml")[0]
    exported = _exported_metric_names()
    standard = {"up"}  # Prometheus's own per-target series
    alerts = []
    for group in document["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            alerts.append(rule["alert"])
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["labels"]["severity"] in ("critical", "warning", "info")
            assert rule["annotations"]["summary"]
            assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s"))
            expr = rule["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}")
            names = set(re.findall(r"\b(avidence_[a-z0-9_]+)", expr))
            names |= set(re.findall(r"\b([a-z_:][a-z0-9_:]*)\{", expr))
            assert names, rule["alert"]
            unknown = names - exported - standard
            assert not unknown, f"{rule['alert']}: no such metric {unknown}"
    assert len(alerts) == len(set(alerts))
    assert any("integrity" in a.lower() or "Changed" in a for a in alerts)


def test_operations_doc_lists_every_metric_and_deploy_piece() -> None:
    from avidence.server.metrics import Metrics

    doc = _read(ROOT / "docs" / "operations.md")
    for family in Metrics.create().registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{name}`" in doc, name
    for piece in ("compose.yaml", "k8s/", "systemd/", "prometheus-alerts.yaml", "sizing.py"):
        assert piece in doc, piece
