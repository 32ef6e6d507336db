"""API fuzzing: schemathesis' own CLI (`st run`, as a user runs it) generates requests from the live
server's `/openapi.json` against a real uvicorn with an API key, an allowed root and a small
indexed library, with every check on (no 5xx, response schemas, documented status codes, schema-
valid requests accepted and schema-violating ones refused, auth) and every phase, stateful
included (it follows the documented links from jobs and listings to the videos)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import wait_job

from .conftest import Forks, base_env, kill9, tiny_settings

pytestmark = pytest.mark.slow  # schema fuzzing of a live server

KEY = "fuzz-key"
ST = Path(sys.executable).with_name("st")
# a fixed seed and few examples per operation: the coverage phase (every documented bound and
# its violation, per operation) is most of the time, ~25-35 s on the 2-core host
EXAMPLES = 3
SEED = 16


@pytest.fixture(scope="module")
def live_server(
    forks: Forks, corpus: list[Path], tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    settings_ = tiny_settings(
        tmp, corpus[0].parent, tiny_ckpt, api_keys=[KEY], limits={"max_upload_bytes": 1 << 20}
    )
    log = tmp / "server.log"
    url, proc = forks.start_server(settings_, log)
    try:
        with httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": KEY}) as c:
            # real ids (1, 2) exist, so generated small ids also hit the found paths
            job = c.post("/v1/ingest", json={"paths": [str(p) for p in corpus[:2]]}).json()["id"]
            wait_job(c, job)
        yield url, tmp
        assert httpx.get(url + "/healthz", timeout=10).status_code == 200, (
            f"server died during fuzzing:\n{log.read_text()[-3000:]}"
        )
    finally:
        kill9(proc)


def test_api_fuzz_all_checks(live_server: tuple[str, Path]) -> None:
    url, tmp = live_server
    argv = [str(ST), "run", f"{url}/openapi.json", "--checks", "all", "-H", f"X-API-Key: {KEY}"]
    argv += ["-n", str(EXAMPLES), "--seed", str(SEED), "--phases", "examples,coverage,fuzzing,stateful"]
    argv += ["--request-timeout", "60", "--no-color"]
    # cwd: st keeps its replay cassettes in ./.schemathesis
    run = subprocess.run(argv, cwd=tmp, env=base_env(), capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    cases = re.search(r"(\d+) generated, (\d+) passed", out)
    print(f"\nschemathesis: {cases.group(0) if cases else '?'}; {out.strip().splitlines()[-1]}")
    assert run.returncode == 0 and cases is not None, out[-6000:]
    assert int(cases.group(1)) >= 300  # every phase ran over every operation
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅\s+{phase}", out), out[-6000:]
