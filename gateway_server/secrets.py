"""Secrets from config: ``$ENV`` reference, a path to a file, or a literal, held in a masked type.

A :class:`Secret` never shows its value in ``repr``/``str``/``format`` or in a pydantic dump; the
value is read only by ``.get()``, at the one place that builds the upstream request. ``.source`` is
what the config said (``$OPENAI_API_KEY`` stays a reference when a route is written back to disk).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

__all__ = ["MASK", "Secret", "redact", "resolve_secret"]

MASK = "**********"


class Secret:
    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str | None = None) -> None:
        self._value = value
        # What the config said: an env reference or a path are safe to write back; a literal is
        # itself secret, so it is kept only to persist the route as the operator wrote it.
        self.source = source if source is not None else value

    def get(self) -> str:
        return self._value

    @property
    def is_reference(self) -> bool:
        return self.source.startswith("$") or self.source != self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:  # pickling keeps the reference, never serialises as plain text by accident
        return (Secret, (self._value, self.source))

    @classmethod
    def __get_pydantic_core_schema__(cls, source_type: Any, handler: GetCoreSchemaHandler) -> Any:
        def validate(value: Any) -> Secret:
            if isinstance(value, Secret):
                return value
            if not isinstance(value, str):
                raise PydanticCustomError(
                    "secret_type", "must be a string: an API key, a $ENV_VARIABLE or a path to a file"
                )
            if not value.strip():
                raise PydanticCustomError("secret_empty", "must not be empty")
            return resolve_secret(value)

        return core_schema.no_info_plain_validator_function(
            validate,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda s: MASK),
        )


def resolve_secret(reference: str) -> Secret:
    """``$NAME`` → the environment variable (unset is an error naming it); an existing file → its
    contents, stripped; anything else → the literal itself."""
    if reference.startswith("$"):
        name = reference[1:]
        if name.startswith("{") and name.endswith("}"):
            name = name[1:-1]
        value = os.environ.get(name)
        if value is None:
            raise PydanticCustomError(
                "secret_not_found", "environment variable '{variable}' is not set", {"variable": name}
            )
        return Secret(value, reference)
    try:
        path = Path(reference).expanduser()
        if path.is_file():
            return Secret(path.read_text(encoding="utf-8").strip(), reference)
    except (OSError, ValueError):  # names too long for the OS, NUL bytes: not a path, a literal
        pass
    return Secret(reference, reference)


def redact(text: str, secrets: list[Secret] | tuple[Secret, ...]) -> str:
    """Remove every secret's value from a text before it is logged or returned."""
    for secret in secrets:
        value = secret.get()
        if value and len(value) >= 4:
            text = text.replace(value, MASK)
    return text
