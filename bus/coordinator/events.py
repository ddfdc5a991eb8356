"""Events that start runs: CloudEvents decoding and the run ids they lead to.

An event on ``bus.event.<type>`` arrives in CloudEvents binary mode (the body is the data,
attributes in ``ce-*`` headers, all optional) or structured mode (``Content-Type:
application/cloudevents+json``, the whole event as JSON). Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from bus import codec
from bus.errors import InvalidInputError
from bus.messages import Event

_CLOUDEVENTS_MSGPACK = "application/cloudevents+msgpack"


def read_event(
    subject: str,
    data: bytes,
    headers: Mapping[str, str] | None,
    *,
    prefix: str,
    stream_seq: int,
) -> Event:
    """The event a ``BUS_EVENTS`` message carries.

    The id falls back to ``Nats-Msg-Id`` and then to the stream sequence, so a redelivered
    message always yields the same id (and therefore the same run ids).

    Raises:
        InvalidInputError: a structured-mode body that is not a CloudEvent.
    """
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    ctype = codec.content_type(hdrs)
    fallback_id = hdrs.get("nats-msg-id") or f"seq-{stream_seq}"
    fallback_type = subject.removeprefix(f"{prefix}.event.")
    if ctype in (codec.CLOUDEVENTS_JSON, _CLOUDEVENTS_MSGPACK):
        raw = codec.decode(data, dict[str, Any], ctype)
        raw.setdefault("id", fallback_id)
        raw["type"] = raw.get("type") or fallback_type
        event: Event = codec.convert(raw, Event)
        return event
    return Event(
        type=hdrs.get("ce-type") or fallback_type,
        data=_body(data, ctype),
        id=hdrs.get("ce-id") or fallback_id,
        source=hdrs.get("ce-source") or "bus",
        time=hdrs.get("ce-time") or "",
        traceparent=hdrs.get("traceparent") or "",
    )


def _body(data: bytes, ctype: str) -> Any:
    """The data of a binary-mode event: by content type, else MessagePack, JSON or text."""
    if not data:
        return None
    if codec.is_json(ctype):
        return codec.decode(data, Any, ctype)
    for kind in (codec.MSGPACK, codec.JSON):
        try:
            return codec.decode(data, Any, kind)
        except InvalidInputError:
            continue
    return data.decode("utf-8", errors="replace")


def run_id_for_event(event_id: str, topology: str) -> str:
    """The run id an event starts for a topology: the same for every redelivery."""
    digest = hashlib.blake2b(f"{topology}\x00{event_id}".encode(), digest_size=16).hexdigest()
    return f"ev{digest}"
