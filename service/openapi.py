"""Write the live OpenAPI schema: `python -m service.openapi [docs/openapi.json]` (the snapshot)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .app import create_app
from .settings import ServiceSettings

SNAPSHOT = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def live_schema() -> dict[str, Any]:
    # the schema does not depend on settings values; building the app loads no model
    return create_app(ServiceSettings()).openapi()


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else SNAPSHOT
    out.write_text(render(live_schema()))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
