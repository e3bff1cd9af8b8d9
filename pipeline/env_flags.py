"""Flags that TFX_POETS_<FLAG> environment variables set: a table kept as the flags are added.

pipeline/cli.py adds each flag through a FlagGroup, which notes the flag, its destination and
its kind (bool, list, int, float, str); environment_defaults parses the variables of that table
into defaults for argparse's set_defaults. Nothing here reads argparse's internals.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, Sequence

from pipeline.preflight import CliError

ENV_PREFIX = "TFX_POETS_"


@dataclasses.dataclass(frozen=True)
class EnvFlag:
    """A flag that TFX_POETS_<DEST> sets: its destination and how its text is parsed."""

    flag: str
    dest: str
    kind: str  # "bool", "list" (a repeatable flag: whitespace-separated), "int", "float", "str"


def _kind(options: dict) -> str:
    action = options.get("action")
    if action in ("store_true", argparse.BooleanOptionalAction):
        return "bool"
    if action == "append":
        return "list"
    return {int: "int", float: "float"}.get(options.get("type"), "str")


class FlagGroup:
    """An argument group that notes every flag added through it in `table`, so that the
    environment is read from that table rather than from argparse's internals."""

    def __init__(self, group, table: list[EnvFlag]):
        self._group, self._table = group, table

    def add_argument(self, flag: str, **options) -> None:
        self._group.add_argument(flag, **options)
        dest = options.get("dest") or flag.lstrip("-").replace("-", "_")
        self._table.append(EnvFlag(flag, dest, _kind(options)))


TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def parse_bool(name: str, raw: str) -> bool:
    if raw.strip().lower() in TRUE_WORDS:
        return True
    if raw.strip().lower() in FALSE_WORDS:
        return False
    raise CliError(f"{name}={raw!r}: use one of {', '.join(TRUE_WORDS + FALSE_WORDS[:-1])}")


def _number(kind: str, name: str, raw: str) -> int | float:
    try:
        return int(raw) if kind == "int" else float(raw)
    except ValueError:
        raise CliError(
            f"{name}={raw!r}: use {'an integer' if kind == 'int' else 'a number'}"
        ) from None


# How the text of an environment variable becomes a flag's default, by the flag's kind.
_ENV_PARSERS: dict[str, Callable[[str, str], object]] = {
    "bool": parse_bool,
    "list": lambda name, raw: raw.split(),
    "int": lambda name, raw: _number("int", name, raw),
    "float": lambda name, raw: _number("float", name, raw),
    "str": lambda name, raw: raw,
}


def environment_defaults(table: Sequence[EnvFlag], environ: Mapping[str, str]) -> dict:
    """TFX_POETS_<DEST> of each flag in `table` that `environ` sets, parsed by its kind:
    what overrides the flags' defaults, so that containers can configure by environment."""
    values = {}
    for entry in table:
        name = ENV_PREFIX + entry.dest.upper()
        if name in environ:
            values[entry.dest] = _ENV_PARSERS[entry.kind](name, environ[name])
    return values
