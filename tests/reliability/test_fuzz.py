"""API fuzzing: schemathesis generates requests from the live server's OpenAPI schema (every
operation, a bounded number of examples each) against a real uvicorn with an API key, an allowed
root and a small indexed library; no response may be a 5xx or violate its documented schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.support import wait_job

from .conftest import Zygote, kill9, tiny_settings

pytestmark = pytest.mark.slow  # schema fuzzing of a live server

KEY = "fuzz-key"
EXAMPLES = 12  # per operation: ~15 operations, well under a minute in all


@pytest.fixture(scope="module")
def live_schema(
    zygote: Zygote, corpus: list[Path], tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("fuzz")
    settings_ = tiny_settings(
        tmp, corpus[0].parent, tiny_ckpt, api_keys=[KEY], limits={"max_upload_bytes": 1 << 20}
    )
    log = tmp / "server.log"
    url, pid = zygote.start_server(settings_, log)
    try:
        with httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": KEY}) as c:
            # real ids (1, 2) exist, so generated small ids also hit the found paths
            job = c.post("/v1/ingest", json={"paths": [str(p) for p in corpus[:2]]}).json()["id"]
            wait_job(c, job)
        yield schemathesis.openapi.from_url(url + "/openapi.json")
        assert pid_ok(url), f"server died during fuzzing:\n{log.read_text()[-3000:]}"
    finally:
        kill9(pid)


def pid_ok(url: str) -> bool:
    return httpx.get(url + "/healthz", timeout=10).status_code == 200


def test_api_fuzz(live_schema: Any) -> None:
    # schemathesis' own pytest plugin does not load under this pytest: drive hypothesis directly
    failures: list[str] = []
    operations = 0
    for result in live_schema.get_all_operations():
        op = result.ok()
        operations += 1

        @given(case=op.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: Any) -> None:
            case.call_and_validate(
                headers={"X-API-Key": KEY},
                timeout=30,
                checks=[not_a_server_error, response_schema_conformance],
            )

        try:
            run()
        except BaseException as e:  # collect every operation's failure (exception groups too)
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            failures.append(f"{op.label}: {type(e).__name__}: {str(e)[:1500]}")
    print(f"\nfuzz: {operations} operations x {EXAMPLES} examples, {len(failures)} failing")
    assert operations >= 10
    assert not failures, "\n\n".join(failures)
