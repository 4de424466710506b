"""One thing wrong with an endpoint spec, as every check reports it (catalog, validation, the
editor's diagnostics)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Problem"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an endpoint spec; ``field`` names the decorator parameter."""

    code: str
    message: str
    field: str | None = None
    hint: str | None = None
    severity: str = "error"

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "field": self.field,
            "hint": self.hint,
            "severity": self.severity,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Problem:
        return cls(
            code=data["code"],
            message=data["message"],
            field=data.get("field"),
            hint=data.get("hint"),
            severity=data.get("severity", "error"),
        )

    def describe(self) -> str:
        """One line: message, field in parentheses, then the hint."""
        text = self.message + (f" ({self.field})" if self.field else "")
        if self.severity != "error":
            text = f"{self.severity}: {text}"
        return f"{text}. {self.hint}" if self.hint else text
