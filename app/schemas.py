"""Base classes shared by every domain's schemas."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue, SkipJsonSchema
from pydantic_core import core_schema

from app.errors import InvalidInput, field_error


def _document(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """A request body's schema in the OpenAPI document: its `example`, and for a PATCH body
    no defaults (a field left out is unchanged, not set to a default)."""
    example = getattr(model, "example", None)
    if example is not None:
        schema["examples"] = [example]
    if issubclass(model, PatchModel):
        for field in schema.get("properties", {}).values():
            field.pop("default", None)


class InputModel(BaseModel):
    """Request bodies. Unknown fields are refused, so a typo or a `status` is never dropped.
    Text is taken as sent: each text type's pattern (in the OpenAPI document too) refuses
    what the service would otherwise have to alter, such as surrounding whitespace.
    `example` is the body's example in the document (tests/test_openapi.py validates it)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_document)
    example: ClassVar[dict[str, Any] | None] = None

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if _holds_nul(data):
            raise ValueError("text may not contain NUL (\\u0000) characters")
        return data


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


Absent = SkipJsonSchema[None]
"""A PATCH field typed `X | Absent` may be left out (unchanged) but not sent as `null`: the
document declares it not nullable, and `PatchModel.not_nullable` lists it for the 422."""


class PatchModel(InputModel):
    """PATCH bodies: only the fields present change; `null` only where the field allows it."""

    def fields(self) -> dict[str, Any]:
        """The fields this PATCH sets; `null` for one that cannot be empty is a 422."""
        fields = self.model_dump(exclude_unset=True)
        for name in self.not_nullable():
            if name in fields and fields[name] is None:
                raise InvalidInput(
                    f"{name} cannot be null.",
                    errors=[field_error(["body", name], "cannot be null", "not_nullable")],
                )
        return fields

    @classmethod
    def not_nullable(cls) -> list[str]:
        """The fields typed `X | Absent`."""
        return [name for name, field in cls.model_fields.items() if _absent(field.annotation)]


def changes_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What an update changed, as its audit event records it: `{field: {from, to}}`."""
    return {k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k]}


def _absent(annotation: Any) -> bool:
    return any(arg == Absent for arg in get_args(annotation))


class OutputModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# Patterns the OpenAPI document carries, exactly as the service applies them
# (docs/RULES.md#text). No text anywhere may hold NUL (PostgreSQL cannot store it).
NO_NUL = r"^[^\u0000]*$"
_SPACE = r"\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
"""Whitespace as the document's patterns (ECMA-262 `\\s`) read it, spelled out, so that the
service's check and any client's agree on every character."""
TRIMMED = rf"^[^{_SPACE}\u0000]([^\u0000]*[^{_SPACE}\u0000])?$"
"""Text that neither begins nor ends with whitespace, and holds no NUL."""
TRIMMED_OR_EMPTY = rf"^([^{_SPACE}\u0000]([^\u0000]*[^{_SPACE}\u0000])?)?$"
NIP_PATTERN = (
    r"^(19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])"  # birth date YYYYMMDD
    r"(19|20)[0-9]{2}(0[1-9]|[1-9][0-9])"  # appointment YYYYMM (PNS) or YYYY + contract (PPPK)
    r"[12](00[1-9]|0[1-9][0-9]|[1-9][0-9]{2})$"  # sex, sequence
)
"""As much of a NIP's rule (`app.nip`, docs/RULES.md#nip) as a pattern can say; what it
cannot (a real calendar date, not in the future, appointed after birth) the service checks
and answers `invalid_nip`, as it does for anything the pattern refuses."""
_TRIMMED = re.compile(TRIMMED)


@dataclass(frozen=True)
class Trimmed:
    """`Annotated[str, Trimmed(n)]`: free text of up to `n` characters, taken as sent, so
    neither padded with whitespace nor holding NUL, and not blank unless `empty` (then `""`
    too). The document's `pattern` says the same (TRIMMED)."""

    max_length: int
    empty: bool = False

    @property
    def pattern(self) -> str:
        return TRIMMED_OR_EMPTY if self.empty else TRIMMED

    def check(self, value: str) -> str:
        if value == "" and self.empty:
            return value
        if _TRIMMED.fullmatch(value) is None:
            if "\x00" in value:
                raise ValueError("may not contain NUL (\\u0000) characters")
            raise ValueError("may not begin or end with whitespace")
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        text = core_schema.str_schema(min_length=0 if self.empty else 1, max_length=self.max_length)
        return core_schema.no_info_after_validator_function(self.check, text)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        declared = handler(schema)
        declared["pattern"] = self.pattern
        return declared


Code = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9_-]{1,31}$")]
NipStr = Annotated[str, Field(json_schema_extra={"pattern": NIP_PATTERN})]
"""A NIP in a body: checked by the service (`invalid_nip`), declared by its pattern."""
Name = Annotated[str, Trimmed(200)]
Text = Annotated[str, Trimmed(2000)]
FilterText = Annotated[str, StringConstraints(max_length=32, pattern=NO_NUL)]
"""A list filter's code or NIP: matched as given; no match is an empty page."""
