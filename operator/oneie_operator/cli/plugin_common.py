"""What every ``kubectl oneie`` command shares: exit codes, errors, output formats, timestamps."""

from __future__ import annotations

import argparse
import datetime
import enum
import json
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import yaml

OUTPUT_FORMATS = ("table", "json", "yaml")


class ExitCode(enum.IntEnum):
    """Scripts rely on these: keep them stable."""

    OK = 0  # done; every object shown is Ready; the switch Succeeded
    NOT_OK = 1  # something is not Ready; the switch RolledBack or Failed; rotation not finished
    USAGE = 2  # bad usage, object not found, nothing to roll back or retry, an API or kubeconfig error
    TIMEOUT = 3  # --wait gave up before the outcome was known


class PluginError(Exception):
    """A failure to report as one line on stderr, with the exit code it maps to."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.code = code


def now_stamp() -> str:
    """An RFC 3339 UTC timestamp with microseconds: a new value for the request annotations."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def emit(document: Mapping[str, Any] | list[Any], output: str, out: TextIO | None = None) -> None:
    """Print a structured document as JSON or YAML (``output`` is ``json`` or ``yaml``)."""
    stream = out or sys.stdout
    if output == "yaml":
        stream.write(yaml.safe_dump(_plain(document), sort_keys=False, default_flow_style=False))
    else:
        stream.write(json.dumps(document, indent=2, default=str) + "\n")
    stream.flush()


def _plain(value: Any) -> Any:
    """JSON round trip: YAML then sees only plain dicts, lists and scalars."""
    return json.loads(json.dumps(value, default=str))


def notice(args: argparse.Namespace, document: Mapping[str, Any], text: str) -> None:
    """``document`` for ``-o json|yaml``, else ``text``."""
    if args.output != "table":
        emit(document, args.output)
    else:
        say(text)


def say(text: str = "", out: TextIO | None = None) -> None:
    """A line of human output, flushed at once (live progress must show while waiting)."""
    stream = out or sys.stdout
    stream.write(text + "\n")
    stream.flush()


def warn(text: str) -> None:
    say(f"WARNING: {text}", sys.stderr)
