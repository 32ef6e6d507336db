"""Docker deployment checks that need no Docker engine: schema, consistency, lint, entrypoint."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from service.settings_doc import env_example, iter_settings
from tests.support import REPO, free_port, wait_ready

COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILES = [REPO / "docker" / "Dockerfile", REPO / "docker" / "Dockerfile.cpu"]
# The Compose Specification's JSON schema, as shipped in the dclint package on the npm registry.
SCHEMA_PACKAGE = "dclint@3.1.0"
SCHEMA_CACHE = REPO / "var" / "cache" / "compose-spec.schema.json"
# Variables read by compose or the entrypoint, not by the service's settings.
NON_SETTING_VARS = {
    "COMPOSE_PROFILES",
    "T2V_PUBLISH_PORT",
    "T2V_MEDIA_DIR",
    "T2V_PRELOAD_AT_BUILD",
    "T2V_PRELOAD",
}
SETTING_VARS = {s.env for s in iter_settings()}


def compose_schema() -> dict[str, Any]:
    if not SCHEMA_CACHE.exists():
        SCHEMA_CACHE.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                ["npm", "pack", "--silent", SCHEMA_PACKAGE],
                cwd=tmp,
                check=True,
                capture_output=True,
                timeout=120,
            )
            tgz = next(Path(tmp).glob("dclint-*.tgz"))
            with tarfile.open(tgz) as tar:
                member = tar.extractfile("package/schemas/compose.schema.json")
                assert member is not None
                SCHEMA_CACHE.write_bytes(member.read())
    return json.loads(SCHEMA_CACHE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(compose_schema()).validate(compose)


def test_schema_check_catches_a_broken_file(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["restart"] = ["always"]  # must be a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(compose_schema()).validate(broken)


def _mount(volume: str) -> tuple[str, str]:
    """(source, target) of a short-syntax volume; interpolations may contain ':'."""
    parts = re.sub(r"\$\{[^}]*\}", "VAR", volume).split(":")
    return parts[0], parts[1]


def _env_names(service: dict[str, Any]) -> set[str]:
    env = service.get("environment", {})
    return set(env) if isinstance(env, dict) else {e.split("=", 1)[0] for e in env}


def test_compose_env_vars_are_real_settings(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for var in _env_names(service):
            if var.startswith("T2V_"):
                assert var in SETTING_VARS, f"{name}: {var} is not a setting the app reads"
    # ${VAR} interpolations are documented compose-level variables or settings
    for var in re.findall(r"\$\{(\w+)", COMPOSE.read_text()):
        assert var in NON_SETTING_VARS | SETTING_VARS, var


def test_env_example_documents_every_setting() -> None:
    text = ENV_EXAMPLE.read_text()
    assert text == env_example(), (
        ".env.example is stale: regenerate with `t2v settings --env-example > .env.example`"
    )
    named = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.M))
    assert SETTING_VARS <= named, f"undocumented: {sorted(SETTING_VARS - named)}"
    assert named <= SETTING_VARS | NON_SETTING_VARS, (
        f"unknown: {sorted(named - SETTING_VARS - NON_SETTING_VARS)}"
    )


def _dockerfile_env(path: Path) -> dict[str, str]:
    text = path.read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def test_ports_volumes_and_paths_agree(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used: set[str] = set()
    for name, service in compose["services"].items():
        for vol in service.get("volumes", []):
            source = _mount(vol)[0]
            if not source.startswith(("VAR", ".", "/")):
                used.add(source)
                assert source in declared, f"{name}: volume {source} not declared"
        env = service.get("environment", {})
        mounts = [_mount(v)[1] for v in service.get("volumes", [])]
        for var in ("T2V_INDEX_DIR", "T2V_VAR_DIR", "T2V_UPLOAD_DIR", "HF_HOME"):
            if var in env:  # every path the app writes lies on a volume
                assert any(env[var].startswith(m) for m in mounts), (
                    f"{name}: {var}={env[var]} not on a volume"
                )
        if "ports" in service:
            container_port = service["ports"][0].rsplit(":", 1)[1]
            assert container_port == str(env.get("T2V_PORT", "8000"))
        for root in json.loads(env.get("T2V_ALLOWED_ROOTS", "[]")):
            assert any(root.startswith(m) for m in mounts), f"allowed root {root} is not mounted"
        build = service.get("build")
        if build:
            assert (REPO / build["context"] / build["dockerfile"]).exists()
    assert used == declared, f"declared but unused volumes: {declared - used}"
    assert {"store", "uploads", "model-cache"} <= declared
    api = compose["services"]["api"]
    assert api["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    for dockerfile in DOCKERFILES:
        env = _dockerfile_env(dockerfile)
        for var in env:
            if var.startswith("T2V_"):
                assert var in SETTING_VARS, f"{dockerfile.name}: {var} is not a setting"
        assert env["T2V_PORT"] == "8000" and "EXPOSE 8000" in dockerfile.read_text()
        assert env["T2V_MODEL__CHECKPOINT"].startswith("/app/demo/")


def test_dockerfiles_pass_hadolint() -> None:
    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    proc = subprocess.run(
        [exe, "--failure-threshold", "info", *map(str, DOCKERFILES)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        assert re.search(r"^USER \d+", text, re.M), "final stage must run as a non-root user"
        assert "HEALTHCHECK" in text and text.count("FROM ") >= 2


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    assert subprocess.run([exe, str(bad)], capture_output=True).returncode != 0


@pytest.mark.slow  # the whole service through the entrypoint
def test_entrypoint_starts_the_service_on_the_cpu_path(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
        "T2V_HOST": "127.0.0.1",
        "T2V_PORT": str(port),
        "T2V_INDEX_DIR": str(tmp_path / "data" / "index"),
        "T2V_VAR_DIR": str(tmp_path / "data" / "var"),
        "T2V_MODEL__DEVICE": "cpu",
    }
    log_path = tmp_path / "entrypoint.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        ["bash", str(REPO / "docker" / "entrypoint.sh")],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, lambda: proc.poll() is None, log_path, timeout=180)
        r = httpx.get(url + "/readyz", timeout=5)
        assert r.status_code == 200, log_path.read_text()[-3000:]
        assert r.json()  # readiness reports what it loaded
        assert (tmp_path / "data" / "index").exists()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_readme_settings_table_lists_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [env for env in SETTING_VARS if f"`{env}`" not in readme]
    assert not missing, f"README settings table is stale (regenerate with `t2v settings`): {missing}"
