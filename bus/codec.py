"""Wire encoding: MessagePack by default, JSON when ``Content-Type: application/json``.

The only module that decodes wire bytes. Encoders and decoders are built once and reused;
msgspec's errors are translated to ``InvalidInputError`` here, naming the failing field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from bus.errors import InvalidInputError

T = TypeVar("T")

JSON = "application/json"
MSGPACK = "application/msgpack"
CLOUDEVENTS_JSON = "application/cloudevents+json"

_msgpack_encoder = msgspec.msgpack.Encoder()
_json_encoder = msgspec.json.Encoder()


def content_type(headers: Mapping[str, str] | None) -> str:
    """The payload's content type from NATS headers (MessagePack when absent)."""
    if not headers:
        return MSGPACK
    value = headers.get("Content-Type") or headers.get("content-type") or MSGPACK
    return value.split(";", 1)[0].strip().lower()


def is_json(ctype: str) -> bool:
    return ctype == JSON or (ctype != MSGPACK and ctype.endswith("+json"))


def encode(value: Any, ctype: str = MSGPACK) -> bytes:
    """Encode a Struct or plain data in ``ctype`` (MessagePack or JSON)."""
    if ctype is MSGPACK:  # the default, checked without a call
        return _msgpack_encoder.encode(value)
    return _json_encoder.encode(value) if is_json(ctype) else _msgpack_encoder.encode(value)


def encode_json(value: Any) -> bytes:
    return _json_encoder.encode(value)


_msgpack_decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}
_json_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def _msgpack_decoder(tp: Any) -> msgspec.msgpack.Decoder[Any]:
    decoder = _msgpack_decoders.get(tp)
    if decoder is None:
        decoder = _msgpack_decoders[tp] = msgspec.msgpack.Decoder(tp)
    return decoder


def _json_decoder(tp: Any) -> msgspec.json.Decoder[Any]:
    decoder = _json_decoders.get(tp)
    if decoder is None:
        decoder = _json_decoders[tp] = msgspec.json.Decoder(tp)
    return decoder


def decode(data: bytes, tp: type[T], ctype: str = MSGPACK) -> T:
    """Decode ``data`` as ``tp``; raise ``InvalidInputError`` naming the field on failure."""
    try:
        if ctype is not MSGPACK and is_json(ctype):
            value: T = _json_decoder(tp).decode(data)
        else:
            value = _msgpack_decoder(tp).decode(data)
        return value
    except msgspec.ValidationError as exc:
        raise InvalidInputError(str(exc)) from None
    except msgspec.DecodeError as exc:
        kind = "JSON" if is_json(ctype) else "MessagePack"
        raise InvalidInputError(f"payload is not valid {kind}: {exc}") from None


def convert(value: Any, tp: Any) -> Any:
    """Validate plain data against a handler's declared type (``Any`` passes everything)."""
    if tp is Any:
        return value
    try:
        return msgspec.convert(value, tp)
    except msgspec.ValidationError as exc:
        raise InvalidInputError(str(exc)) from None


def to_builtins(value: Any) -> Any:
    """Plain data (dicts, lists, str, numbers) for any Struct or supported value."""
    return msgspec.to_builtins(value)


def decode_json_text(text: str) -> Any:
    """Parse JSON typed by a user (CLI); raise ``InvalidInputError`` with the position."""
    try:
        return msgspec.json.decode(text.encode())
    except msgspec.DecodeError as exc:
        raise InvalidInputError(f"invalid JSON: {exc}") from None


def canonical(value: Any) -> bytes:
    """A canonical encoding of plain data (sorted keys), for hashing inputs."""
    return msgspec.json.encode(msgspec.to_builtins(value), order="sorted")
