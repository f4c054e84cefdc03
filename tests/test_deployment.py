"""Dockerfile, Compose files, README and CI checked statically: no Docker engine runs here."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")
SETTING_NAMES = {f"VAE_{name.upper()}" for name in Settings.model_fields}


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def validate_compose(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_compose_file_keeps_the_compose_schema(tmp_path):
    result = validate_compose(ROOT / "docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    broken = compose()
    broken["services"]["vae"]["helthcheck"] = broken["services"]["vae"].pop("healthcheck")  # a typo must fail
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    assert validate_compose(tmp_path / "broken.yml").returncode != 0


def test_compose_service_agrees_with_the_settings():
    services = compose()["services"]
    assert set(services) == {"redis", "vae"}
    vae, defaults = services["vae"], Settings()
    environment = vae["environment"]
    assert set(environment) <= SETTING_NAMES, set(environment) - SETTING_NAMES
    Settings.model_validate({k[4:].lower(): v for k, v in environment.items() if k != "VAE_MODEL_REPOSITORY"})
    port = int(environment["VAE_PORT"])
    assert vae["ports"] == [f"{defaults.port}:{port}"]
    assert environment["VAE_HOST"] == "0.0.0.0"
    assert f"http://127.0.0.1:{port}/health/ready" in vae["healthcheck"]["test"]
    mounts = {volume.split(":")[1]: volume for volume in vae["volumes"]}
    assert environment["VAE_MODEL_REPOSITORY"] in mounts and mounts["/models"].startswith("./models:")
    redis_url = urlparse(environment["VAE_REDIS_URL"])
    assert redis_url.hostname == "redis" and redis_url.port == 6379
    assert vae["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    (device,) = vae["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]


def test_cpu_override_only_drops_the_gpu_reservation():
    class ComposeLoader(yaml.SafeLoader):
        pass

    ComposeLoader.add_constructor("!reset", lambda loader, node: "RESET")
    override = yaml.load((ROOT / "docker-compose.cpu.yml").read_text(), Loader=ComposeLoader)
    assert override == {"services": {"vae": {"deploy": "RESET"}}}


def dockerfile():
    return DockerfileParser(str(ROOT / "Dockerfile"))


def test_dockerfile_installs_with_the_readme_command_and_runs_as_a_user():
    parser = dockerfile()
    assert parser.baseimage.startswith("nvidia/cuda:") and "cudnn" in parser.baseimage
    steps = [(i["instruction"], i["value"]) for i in parser.structure if i["instruction"] != "COMMENT"]
    users = [value for instruction, value in steps if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
    runs = [value for instruction, value in steps if instruction == "RUN"]
    assert "make install-serve" in runs
    assert [i for i, _ in steps].index("USER") < [v for _, v in steps].index("make install-serve")
    assert json.loads(parser.cmd if parser.cmd.startswith("[") else json.dumps(shlex.split(parser.cmd))) == ["make", "serve"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^serve: \$\(SERVE_STAMP\)$", makefile, re.M)
    assert re.search(r"^install-serve: \$\(SERVE_STAMP\)$", makefile, re.M)


def test_dockerfile_settings_ports_and_health_check_agree():
    parser = dockerfile()
    env = parser.envs
    assert {k for k in env if k.startswith("VAE_")} <= SETTING_NAMES
    port = env["VAE_PORT"]
    assert any(i["instruction"] == "EXPOSE" and i["value"] == port for i in parser.structure)
    (health,) = [i["value"] for i in parser.structure if i["instruction"] == "HEALTHCHECK"]
    assert f"http://127.0.0.1:{port}/health/ready" in health
    copied = {i["value"].split()[-1].strip("./") for i in parser.structure if i["instruction"] == "COPY"}
    assert {"modelrepo", "service", "models"} <= copied


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make serve", "make test"]
    assert readme.index("```bash") < readme.index("## ")
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


@pytest.mark.parametrize("target", ["serve", "test", "models"])
def test_every_readme_target_creates_the_virtual_environment(target):
    dry = subprocess.run(["make", "-n", "-B", target, "VENV=/nonexistent-venv"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "-m venv /nonexistent-venv" in dry.stdout
