"""Dockerfile, Compose files, README and CI checked statically, without a Docker engine.

The real-engine test is deploy/e2e.sh (CI runs it after `make test`): it builds the image, runs the stack
and stops it. These checks catch, in the unit suite, what would otherwise surface only there or in a
user's hands.
"""

import importlib.metadata
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import tomllib
import yaml
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")
SETTING_NAMES = {f"VAE_{name.upper()}" for name in Settings.model_fields}
USER_COMPOSE_FILES = ["docker-compose.yml", "docker-compose.cpu.yml"]
E2E_OVERRIDE = "deploy/compose.e2e.yml"
CONSTRAINTS = ROOT / "deploy" / "image-constraints.txt"
# The server's bounded drain on SIGTERM; stop_grace_period must outlast it.
DRAIN_TIMEOUT_S = Settings.model_fields["drain_timeout_s"].default if "drain_timeout_s" in Settings.model_fields else 20


class ComposeLoader(yaml.SafeLoader):
    """Compose's YAML: `!reset X` (drop the base file's value) read as {"!reset": X}."""


def construct_reset(loader: yaml.SafeLoader, node: yaml.Node) -> dict:
    if isinstance(node, yaml.MappingNode):
        return {"!reset": loader.construct_mapping(node, deep=True)}
    if isinstance(node, yaml.SequenceNode):
        return {"!reset": loader.construct_sequence(node, deep=True)}
    return {"!reset": loader.construct_scalar(node)}


ComposeLoader.add_constructor("!reset", construct_reset)


def load_compose(name: str) -> dict:
    return yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)


def without_resets(value):
    if isinstance(value, dict):
        return value["!reset"] if set(value) == {"!reset"} else {k: without_resets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_resets(item) for item in value]
    return value


def validate_compose(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120)


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


@pytest.mark.parametrize("name", [*USER_COMPOSE_FILES, E2E_OVERRIDE])
def test_compose_files_keep_the_compose_schema(name, tmp_path):
    resolved = tmp_path / Path(name).name
    resolved.write_text(yaml.safe_dump(without_resets(load_compose(name))))
    result = validate_compose(resolved)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = without_resets(load_compose(name))
    service = next(iter(broken["services"].values()))
    service["netwrk_mode"] = "host"  # a typo must fail
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    assert validate_compose(tmp_path / "broken.yml").returncode != 0


def test_compose_service_agrees_with_the_settings():
    services = load_compose("docker-compose.yml")["services"]
    assert set(services) == {"redis", "vae"}
    vae = services["vae"]
    environment = vae["environment"]
    assert set(environment) <= SETTING_NAMES, set(environment) - SETTING_NAMES
    Settings.model_validate({k[4:].lower(): v for k, v in environment.items() if k != "VAE_MODEL_REPOSITORY"})
    port = environment["VAE_PORT"]
    (published,) = vae["ports"]
    address, host_port, container_port = re.fullmatch(r"(\$\{[^}]+\}):(\$\{[^}]+\}):(\d+)", published).groups()
    assert address == "${VAE_PUBLISH_ADDRESS:-127.0.0.1}" and host_port == "${VAE_PUBLISH_PORT:-8000}"
    assert container_port == port and environment["VAE_HOST"] == "0.0.0.0"
    mounts = {volume.split(":")[1]: volume for volume in vae["volumes"]}
    assert environment["VAE_MODEL_REPOSITORY"] in mounts and mounts["/models"] == "./models:/models:ro"
    redis_url = urlparse(environment["VAE_REDIS_URL"])
    assert redis_url.hostname == "redis" and redis_url.port == 6379
    assert vae["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "ports" not in services["redis"], "Redis is for the service only: not published"


def test_compose_runs_on_the_gpu_or_fails_and_the_cpu_override_only_switches_that():
    vae = load_compose("docker-compose.yml")["services"]["vae"]
    assert vae["environment"]["VAE_DEVICE"] == "cuda"  # never a silent fall-back to the CPU
    (device,) = vae["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    # lean by default (no torch); the kernel tier one build argument away, from the shell or .env
    assert vae["build"] == {"context": ".", "args": {"VAE_GPU_EXTRA": "${VAE_GPU_EXTRA:-}"}}
    override = load_compose("docker-compose.cpu.yml")
    assert override == {"services": {"vae": {"build": {"args": {"VAE_GPU_EXTRA": ""}},  # CI's image: no torch
                                             "environment": {"VAE_DEVICE": "cpu"}, "deploy": {"!reset": {}}}}}


def test_compose_service_is_read_only_and_stops_within_its_grace_period():
    vae = load_compose("docker-compose.yml")["services"]["vae"]
    assert vae["read_only"] is True
    assert "/tmp" in vae["tmpfs"]
    assert seconds(vae["stop_grace_period"]) > DRAIN_TIMEOUT_S
    assert "healthcheck" not in vae, "the image's health check applies (one place for it)"


def test_host_network_only_in_the_e2e_override():
    for name in USER_COMPOSE_FILES:
        text = (ROOT / name).read_text()
        assert "network_mode" not in text and "network:" not in text, name
    services = load_compose(E2E_OVERRIDE)["services"]
    assert set(services) == set(load_compose("docker-compose.yml")["services"])
    assert all(service["network_mode"] == "host" for service in services.values())
    vae = services["vae"]
    assert vae["build"] == {"network": "host"} and vae["ports"] == {"!reset": []}
    assert vae["environment"]["VAE_PORT"] == "${E2E_VAE_PORT:?}"
    assert "${E2E_REDIS_PORT:?}" in vae["environment"]["VAE_REDIS_URL"]
    assert "${E2E_REDIS_PORT:?}" in services["redis"]["command"]


def dockerfile() -> DockerfileParser:
    return DockerfileParser(str(ROOT / "Dockerfile"))


def instructions(parser: DockerfileParser) -> list[tuple[str, str]]:
    return [(i["instruction"], i["value"]) for i in parser.structure if i["instruction"] != "COMMENT"]


def final_stage(parser: DockerfileParser) -> list[tuple[str, str]]:
    steps = instructions(parser)
    last_from = max(i for i, (instruction, _) in enumerate(steps) if instruction == "FROM")
    return steps[last_from:]


def test_dockerfile_runs_the_server_as_pid_1_as_a_user():
    parser = dockerfile()
    base = parser.parent_images[0]  # the first stage's; the later ones build on it
    assert base.startswith("nvidia/cuda:13.0") and "cudnn" in base and base.endswith("ubuntu24.04")
    steps = final_stage(parser)
    users = [value for instruction, value in steps if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert parser.cmd.startswith("["), "exec form: the server is PID 1 and receives SIGTERM itself"
    assert json.loads(parser.cmd) == ["/opt/venv/bin/python", "-m", "service"]
    assert not any(instruction == "ENTRYPOINT" for instruction, _ in steps)
    runs = " ".join(value for instruction, value in instructions(parser) if instruction == "RUN")
    assert "python3 -m venv /opt/venv" in runs and "make " not in runs
    environments = " ".join(value for instruction, value in instructions(parser) if instruction == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in environments.split()  # set in the first stage, inherited


def test_dockerfile_installs_dependencies_before_the_code():
    steps = final_stage(dockerfile())
    (dependencies,) = [i for i, (instruction, value) in enumerate(steps)
                       if instruction == "RUN" and "pip install -r" in value]
    assert "-c /opt/vae/constraints.txt" in steps[dependencies][1]
    code = [i for i, (instruction, value) in enumerate(steps)
            if instruction == "COPY" and re.search(r"\b(service|modelrepo|models|README\.md)\b", value)]
    assert code and min(code) > dependencies
    (project,) = [i for i, (instruction, value) in enumerate(steps) if instruction == "RUN" and "--no-deps" in value]
    assert "--no-build-isolation" in steps[project][1]  # the build backend is among the dependencies
    assert all(project > i for i in code if re.search(r"\b(service|modelrepo)\b", steps[i][1]))
    commands = " ".join(value for instruction, value in instructions(dockerfile()) if instruction in ("RUN", "COPY"))
    assert not re.search(r"torch|\[train|\btests\b|\btraining\b|\bbench\b|\bdocs\b", commands)


def test_dockerfile_reads_the_dependency_list_from_pyproject(tmp_path):
    (command,) = [value for instruction, value in instructions(dockerfile()) if "tomllib" in value]
    (tmp_path / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())
    command = command.replace("/build/", f"{tmp_path}/").replace("python3 ", f"{shlex.quote(sys.executable)} ", 1)
    subprocess.run(command, shell=True, check=True, timeout=60)
    listed = (tmp_path / "requirements.txt").read_text().split("\n")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert [line for line in listed if line] == [*pyproject["project"]["dependencies"],
                                                  *pyproject["build-system"]["requires"]]


def test_the_gpu_build_arg_adds_the_gpu_extra_and_nothing_else(tmp_path):
    (command,) = [value for instruction, value in instructions(dockerfile()) if "tomllib" in value]
    (tmp_path / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())
    command = command.replace("/build/", f"{tmp_path}/").replace("python3 ", f"{shlex.quote(sys.executable)} ", 1)
    subprocess.run(command, shell=True, check=True, timeout=60, env={**os.environ, "VAE_GPU_EXTRA": "1"})
    listed = [line for line in (tmp_path / "requirements.txt").read_text().split("\n") if line]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert listed == [*pyproject["project"]["dependencies"], *pyproject["build-system"]["requires"],
                      *pyproject["project"]["optional-dependencies"]["gpu"]]
    assert {Requirement(r).name for r in pyproject["project"]["optional-dependencies"]["gpu"]} == {"torch", "triton"}


def test_the_gpu_extra_pins_torch_and_triton_together_and_the_docs_say_how_to_build_it():
    """torch's Linux wheel requires one exact triton (PyPI metadata): the extra pins that pair, the same torch as
    the training extra, and the Dockerfile and docs/DEPLOYMENT.md name the versions and the build argument."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    gpu = {Requirement(r).name: Requirement(r) for r in extras["gpu"]}
    exact = {name: str(r.specifier) for name, r in gpu.items()}
    assert exact == {"torch": "==2.13.0", "triton": "==3.7.1"}
    assert "torch==2.13.0" in extras["train"]
    header = "".join(line for line in (ROOT / "Dockerfile").read_text().splitlines(True) if line.startswith("#"))
    deployment = (ROOT / "docs" / "DEPLOYMENT.md").read_text()
    for text in (header, deployment):
        assert "torch==2.13.0" in text and "triton==3.7.1" in text and "VAE_GPU_EXTRA=1" in text
    assert "`VAE_GPU_EXTRA=1 docker compose up --build`" in deployment
    assert re.search(r"Image sizes.*lean.*MB.*VAE_GPU_EXTRA=1", deployment, re.S)
    readme = (ROOT / "README.md").read_text()
    assert "`VAE_GPU_EXTRA=1 docker compose up --build`" in readme


def pins() -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in CONSTRAINTS.read_text().splitlines()]
    found = {}
    for line in filter(None, lines):
        name, version = re.fullmatch(r"([A-Za-z0-9._-]+)==([0-9][0-9a-z.]*)", line).groups()  # exact pins only
        found[name.lower()] = version
    return found


def test_image_pins_are_exact_and_allowed_by_pyproject():
    pinned = pins()
    assert pinned["onnxruntime-gpu"] == "1.31.1"  # the release built for CUDA 13.0 and cuDNN 9
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = [Requirement(r) for r in pyproject["project"]["dependencies"] + pyproject["build-system"]["requires"]]
    by_name = {r.name.lower(): r for r in requirements}
    for name, version in pinned.items():
        assert name in by_name, f"{name} is pinned for the image but not required by pyproject.toml"
        assert by_name[name].specifier.contains(version), f"{name}=={version} is outside {by_name[name]}"
    assert not {"torch", "onnxruntime"} & set(pinned)


def test_uvicorn_is_the_release_the_connection_guard_is_written_against():
    """service/http/server.py subclasses uvicorn's httptools protocol and reads its internals: one release only."""
    from service.http.server import GUARDED_HTTPTOOLS, GUARDED_UVICORN

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = {r.name: r for r in map(Requirement, pyproject["project"]["dependencies"])}
    for name, release in (("uvicorn", GUARDED_UVICORN), ("httptools", GUARDED_HTTPTOOLS)):
        assert str(requirements[name].specifier) == f"=={release}"
        assert importlib.metadata.version(name) == release


def test_dockerfile_settings_ports_and_health_check_agree():
    parser = dockerfile()
    env = parser.envs
    assert {k for k in env if k.startswith("VAE_")} <= SETTING_NAMES
    port = env["VAE_PORT"]
    assert any(i["instruction"] == "EXPOSE" and i["value"] == port for i in parser.structure)
    (health,) = [i["value"] for i in parser.structure if i["instruction"] == "HEALTHCHECK"]
    assert "http://127.0.0.1:" in health and "os.environ['VAE_PORT']" in health and "/health/ready" in health
    assert env["VAE_MODEL_REPOSITORY"] == "/opt/vae/models"
    assert any(value == f"models {env['VAE_MODEL_REPOSITORY']}" for instruction, value in final_stage(parser)
               if instruction == "COPY")


def test_dockerignore_lets_in_exactly_what_the_dockerfile_copies():
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*", "an allow-list"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    sources = set()
    for instruction, value in instructions(dockerfile()):
        if instruction == "COPY" and "--from=" not in value:
            sources.update(part.rstrip("/") for part in value.split()[:-1] if not part.startswith("--"))
    assert sources == allowed
    assert all((ROOT / source).exists() for source in sources)


def test_readme_opens_with_the_two_commands_and_describes_docker():
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make serve", "make test"]
    assert readme.index("```bash") < readme.index("## ")
    assert "`docker compose up`" in readme
    assert "`docker compose -f docker-compose.yml -f docker-compose.cpu.yml up`" in readme
    assert "VAE_PUBLISH_ADDRESS" in readme and "127.0.0.1" in readme
    assert f"onnxruntime-gpu=={pins()['onnxruntime-gpu']}" in readme
    assert re.search(r"driver >= ?580", readme)


def test_ci_runs_the_readme_tests_then_the_docker_test():
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make test" in ci and "bash deploy/e2e.sh" in ci
    assert ci.index("make test") < ci.index("bash deploy/e2e.sh")
    script = ROOT / "deploy" / "e2e.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True, timeout=30).returncode == 0
    text = script.read_text()
    for name in [*USER_COMPOSE_FILES, E2E_OVERRIDE]:
        assert f"-f {name}" in text
    assert "trap cleanup EXIT" in text and "../shared/docker/engine.sh" in text


@pytest.mark.parametrize("target", ["serve", "test", "models"])
def test_every_readme_target_creates_the_virtual_environment(target):
    dry = subprocess.run(["make", "-n", "-B", target, "VENV=/nonexistent-venv"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "-m venv /nonexistent-venv" in dry.stdout
