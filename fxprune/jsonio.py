"""One JSON round trip for fxprune's records (Plan, Resolution, Report, CriteriaAnalysis): a class
with ``to_dict`` / ``from_dict`` gets ``to_json(path=None)`` and ``from_json(text_or_path)``; a
file that cannot be read, is not JSON or does not fit raises the class's own error, naming it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import FxPruneError

__all__ = ["JsonRecord", "load_json"]


def load_json(text_or_path: str | Path, what: str, error: type[Exception]) -> Any:
    """JSON from a file path or JSON text; missing files and bad JSON raise ``error`` naming them."""
    is_text = isinstance(text_or_path, str) and text_or_path.lstrip().startswith("{")
    try:
        text = str(text_or_path) if is_text else Path(text_or_path).read_text()
    except OSError as exc:
        raise error(f"cannot read the {what} file {text_or_path}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"{what} text" if is_text else text_or_path
        raise error(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None


class JsonRecord:
    """Mixin: JSON text and files from ``to_dict`` / ``from_dict``."""

    JSON_WHAT = "record"
    JSON_ERROR: type[Exception] = FxPruneError
    JSON_INDENT = 1

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every record defines it
        raise NotImplementedError

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=self.JSON_INDENT)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Any:
        d = load_json(text_or_path, cls.JSON_WHAT, cls.JSON_ERROR)
        try:
            return cls.from_dict(d)  # type: ignore[attr-defined]
        except FxPruneError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise cls.JSON_ERROR(f"not a valid fxprune {cls.JSON_WHAT} ({type(exc).__name__}: {exc})") from None
