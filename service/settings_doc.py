"""Every setting as its environment variable, default and description (for docs, .env, `t2v settings`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import typer
from pydantic import BaseModel

from .settings import ServiceSettings

PREFIX = "T2V_"


@dataclass(frozen=True)
class SettingDoc:
    env: str  # environment variable name
    default: str  # default as it would be written in the environment
    description: str


def iter_settings(cls: type[BaseModel] = ServiceSettings, prefix: str = PREFIX) -> Iterator[SettingDoc]:
    for name, field in cls.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from iter_settings(ann, f"{prefix}{name.upper()}__")
            continue
        default = field.get_default(call_default_factory=True)
        if isinstance(default, list):
            text = "[" + ",".join(f'"{x}"' for x in default) + "]"  # lists are JSON in the environment
        else:
            text = "" if default is None else str(default)
        yield SettingDoc(f"{prefix}{name.upper()}", text, field.description or "")


def settings_table() -> None:
    """Print every setting (environment variable, default, meaning) as a Markdown table."""
    typer.echo("| variable | default | meaning |")
    typer.echo("|---|---|---|")
    for s in iter_settings():
        typer.echo(f"| `{s.env}` | `{s.default}` | {s.description} |")
