"""Helpers shared by CLI handlers: JSON output and argument types."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def emit(result: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    """Print ``result``: exactly one JSON object with ``--json``, else ``render(result)``."""
    if as_json:
        json.dump(result, sys.stdout, indent=None, sort_keys=False, default=_default)
        sys.stdout.write("\n")
    else:
        print(render(result))


def status_line(message: str = "") -> None:
    """One updating status line on a terminal (an empty message clears it); nothing when stderr
    is not a terminal."""
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[K{message}")
        sys.stderr.flush()


def _default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def add_json_flag(parser: Any) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
