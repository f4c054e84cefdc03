"""deploy/kubernetes: each overlay rendered by `kubectl kustomize`, validated by `kubernetes-validate --strict`
against the schemas of Kubernetes releases (offline), and the rendered documents read for what a production
serving deployment needs (docs/DEPLOYMENT.md, "Kubernetes"). No cluster is needed.

kubectl is on the project's machines (.ci/run installs it when missing); without it these tests fail, they do
not skip: an unrendered manifest is an unchecked one.
"""

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from service.metrics import Metrics
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("gpu", "cpu")
COMPONENTS = ("hpa-work-in-flight", "model-volume")
# The newest release kubernetes-validate ships schemas for, and the oldest these manifests claim (policy/v1's
# unhealthyPodEvictionPolicy is GA from 1.31)
KUBERNETES_VERSIONS = ("1.37.0", "1.31.0")
KUBERNETES_VALIDATE = Path(sys.executable).with_name("kubernetes-validate")
SETTING_NAMES = {f"VAE_{name.upper()}" for name in Settings.model_fields}
SERVER_LABELS = {"app.kubernetes.io/name": "vae-serve", "app.kubernetes.io/component": "server"}


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl is not installed: these tests render the manifests with `kubectl kustomize` "
                    "(.ci/run installs it; on Debian, the `kubectl` package of the Kubernetes apt repository)")
    return path


def render_folder(folder: Path) -> str:
    result = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@functools.cache
def rendered(overlay: str) -> str:
    return render_folder(KUBERNETES / "overlays" / overlay)


@functools.cache
def rendered_with_components(overlay: str, tmp: str) -> str:
    """The overlay with every component of deploy/kubernetes/components, as a user's kustomization adds them."""
    folder = Path(tmp) / f"with-components-{overlay}"
    folder.mkdir(exist_ok=True)
    relative = lambda path: os.path.relpath(path, folder)  # kustomize takes no absolute paths
    (folder / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [relative(KUBERNETES / "overlays" / overlay)],
        "components": [relative(KUBERNETES / "components" / name) for name in COMPONENTS]}))
    return render_folder(folder)


def documents(text: str) -> dict[tuple[str, str], dict]:
    """(kind, name) -> document; a generated ConfigMap under its name without the hash suffix."""
    found = {}
    for doc in yaml.safe_load_all(text):
        name = doc["metadata"]["name"]
        if doc["kind"] == "ConfigMap":
            name = re.sub(r"-[a-z0-9]{10}$", "", name)
        found[doc["kind"], name] = doc
    return found


def server(docs: dict) -> tuple[dict, dict]:
    """The service's pod spec and its container."""
    pod = docs["Deployment", "vae-serve"]["spec"]["template"]["spec"]
    return pod, next(c for c in pod["containers"] if c["name"] == "vae-serve")


def settings_of(docs: dict, container: dict) -> dict[str, str]:
    """The VAE_* environment the container gets from its ConfigMaps (envFrom) and literal env entries."""
    by_name = {doc["metadata"]["name"]: doc for (kind, _), doc in docs.items() if kind == "ConfigMap"}
    env = {}
    for source in container.get("envFrom", []):
        env.update(by_name[source["configMapRef"]["name"]]["data"])  # a missing ConfigMap: KeyError
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def dockerfile_user_id() -> int:
    return int(re.search(r"useradd --uid (\d+)", (ROOT / "Dockerfile").read_text()).group(1))


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.fixture(scope="module")
def components_tmp(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("kustomize"))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS + tuple(f"{o}+components" for o in OVERLAYS))
def test_every_overlay_renders_and_passes_strict_validation(overlay, version, components_tmp, tmp_path):
    text = rendered_with_components(overlay.split("+")[0], components_tmp) if "+" in overlay else rendered(overlay)
    path = tmp_path / "rendered.yaml"
    path.write_text(text)
    result = subprocess.run([str(KUBERNETES_VALIDATE), "--strict", "--kubernetes-version", version, str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(documents(text)) >= 8, result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_deployment_probes_runs_unprivileged_and_outlasts_its_drain(overlay):
    docs = documents(rendered(overlay))
    pod, container = server(docs)
    http_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
    probes = {kind: container[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert probes["startupProbe"]["httpGet"]["path"] in ("/health/live", "/health/ready")
    startup = probes["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # every model loaded (and checked)
    assert all(p["httpGet"]["port"] in ("http", http_port) for p in probes.values())

    assert pod["securityContext"]["runAsUser"] == dockerfile_user_id() == 10001
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"] and "add" not in security["capabilities"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in volumes[tmp["name"]]

    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), container["resources"]
    env = settings_of(docs, container)
    settings = Settings(**{k[4:].lower(): v for k, v in env.items() if k != "VAE_MODEL_REPOSITORY"})
    assert settings.drain_ready_delay_s > 0 and settings.workers == 1
    assert pod["terminationGracePeriodSeconds"] > settings.drain_timeout_s + settings.drain_ready_delay_s
    assert "replicas" not in docs["Deployment", "vae-serve"]["spec"]  # the autoscaler's to set


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_in_the_manifests_is_a_real_one_and_the_keys_come_from_a_secret(overlay):
    docs = documents(rendered(overlay))
    _, container = server(docs)
    env = settings_of(docs, container)
    assert set(env) <= SETTING_NAMES, set(env) - SETTING_NAMES  # a misspelt name would be ignored silently
    keys = next(e for e in container["env"] if e["name"] == "VAE_API_KEYS")
    assert "secretKeyRef" in keys["valueFrom"] and "VAE_API_KEYS" not in env
    assert not any(doc["kind"] == "Secret" for doc in docs.values())  # no key is committed


def test_the_gpu_overlay_asks_for_one_gpu_and_the_cpu_overlay_for_none():
    gpu_docs, cpu_docs = documents(rendered("gpu")), documents(rendered("cpu"))
    gpu_pod, gpu_container = server(gpu_docs)
    assert gpu_container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert settings_of(gpu_docs, gpu_container)["VAE_DEVICE"] == "cuda"
    assert gpu_pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in gpu_pod["tolerations"])
    cpu_pod, cpu_container = server(cpu_docs)
    assert settings_of(cpu_docs, cpu_container)["VAE_DEVICE"] == "cpu"
    assert "nvidia.com/gpu" not in rendered("cpu") and "nodeSelector" not in cpu_pod
    assert gpu_container["image"].endswith(":gpu") and cpu_container["image"].endswith(":cpu")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_service_budget_and_autoscaler_point_at_the_deployment(overlay):
    docs = documents(rendered(overlay))
    deployment = docs["Deployment", "vae-serve"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(SERVER_LABELS, pod_labels) and deployment["spec"]["selector"]["matchLabels"] == SERVER_LABELS
    service = docs["Service", "vae-serve"]
    assert selects(service["spec"]["selector"], pod_labels)
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    budget = docs["PodDisruptionBudget", "vae-serve"]
    assert budget["apiVersion"] == "policy/v1" and selects(budget["spec"]["selector"]["matchLabels"], pod_labels)
    assert budget["spec"]["maxUnavailable"] == 1
    autoscaler = docs["HorizontalPodAutoscaler", "vae-serve"]
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    assert autoscaler["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                    "name": "vae-serve"}
    assert autoscaler["spec"]["minReplicas"] >= 2  # the budget leaves one serving through a node drain
    assert [m["resource"]["name"] for m in autoscaler["spec"]["metrics"]] == ["cpu"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_redis_is_the_shared_cache_and_only_the_service_reaches_it(overlay):
    docs = documents(rendered(overlay))
    _, container = server(docs)
    url = urlparse(settings_of(docs, container)["VAE_REDIS_URL"])
    redis_service = docs["Service", url.hostname]
    assert redis_service["spec"]["ports"][0]["port"] == url.port == 6379
    redis_pod = docs["Deployment", url.hostname]["spec"]["template"]
    assert selects(redis_service["spec"]["selector"], redis_pod["metadata"]["labels"])
    redis_container = redis_pod["spec"]["containers"][0]
    assert redis_container["securityContext"]["readOnlyRootFilesystem"] is True
    assert redis_pod["spec"]["securityContext"]["runAsNonRoot"] is True
    policy = docs["NetworkPolicy", "vae-redis"]["spec"]
    assert selects(policy["podSelector"]["matchLabels"], redis_pod["metadata"]["labels"])
    assert policy["policyTypes"] == ["Ingress"] and len(policy["ingress"]) == 1
    (rule,) = policy["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": SERVER_LABELS}}]  # no namespace or IP block
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]


def test_the_model_repository_is_the_images_or_a_shared_volume(components_tmp):
    _, container = server(documents(rendered("cpu")))
    baked = settings_of(documents(rendered("cpu")), container)["VAE_MODEL_REPOSITORY"]
    assert f"COPY models {baked}" in (ROOT / "Dockerfile").read_text()
    docs = documents(rendered_with_components("cpu", components_tmp))
    pod, container = server(docs)
    repository = settings_of(docs, container)["VAE_MODEL_REPOSITORY"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == repository)
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    claim = docs["PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    assert float(settings_of(docs, container)["VAE_RELOAD_INTERVAL_S"]) > 0  # new versions are picked up


def test_the_work_in_flight_autoscaler_asks_for_a_metric_the_service_exports(components_tmp):
    docs = documents(rendered_with_components("gpu", components_tmp))
    (metric,) = docs["HorizontalPodAutoscaler", "vae-serve"]["spec"]["metrics"]
    name = metric["pods"]["metric"]["name"]
    assert metric["type"] == "Pods" and name == "vae_work_in_flight"
    assert re.search(rf"^# TYPE {name} gauge$", Metrics().render().decode(), re.M)
    rules = yaml.safe_load((KUBERNETES / "components" / "hpa-work-in-flight" / "prometheus-adapter-rules.yaml")
                           .read_text())["rules"]["custom"]
    assert any(rule["name"]["as"] == name and name in rule["seriesQuery"] for rule in rules)
    bound = Settings.model_fields["max_inflight_work"].default
    target = metric["pods"]["target"]["averageValue"]
    assert 0 < int(target.rstrip("k")) * (1000 if target.endswith("k") else 1) < bound  # out before shedding
