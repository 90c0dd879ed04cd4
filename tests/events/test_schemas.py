"""Event schemas: round trips, keys, versioning and the errors malformed input gets."""

from __future__ import annotations

import json

import pytest

from storycue.errors import InvalidInputError
from storycue.events.schemas import (
    SCHEMA_VERSION,
    TrackEmbeddedEvent,
    TrackEvent,
    decode_track_event,
)


def _event(**kw: object) -> TrackEvent:
    base: dict[str, object] = {
        "type": "track.added",
        "tenant": "acme",
        "catalogue": "jazz",
        "track_key": "t-1",
        "uri": "/music/a.wav",
    }
    return TrackEvent.model_validate(base | kw)


def test_round_trip_and_key() -> None:
    ev = _event(metadata={"title": "A", "artist": "B", "tags": ["calm", "piano"]})
    back = decode_track_event(ev.to_bytes())
    assert back == ev
    assert ev.key == "acme/jazz/t-1"
    assert ev.schema_version == SCHEMA_VERSION
    assert json.loads(ev.to_bytes())["type"] == "track.added"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (None, "empty"),
        (b"", "empty"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"type": "track.exploded"}', "unknown event type"),
        (b'{"type": "track.added", "tenant": "a"}', "catalogue"),
        (_event().to_bytes().replace(b'"schema_version":1', b'"schema_version":99'), "newer"),
        (_event().to_bytes().replace(b'"acme"', b'"ac/me"'), "'/'"),
        (_event().to_bytes()[:-1] + b',"surprise":1}', "surprise"),
        (b'{"type":"track.added","x":"' + b"a" * 1_000_001 + b'"}', "over"),
    ],
)
def test_malformed_messages_say_what_is_wrong(value: bytes | None, fragment: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        decode_track_event(value)
    assert fragment in info.value.message


def test_embedded_event_carries_the_track() -> None:
    ev = TrackEmbeddedEvent(
        tenant="acme",
        catalogue="jazz",
        track_key="t-1",
        source_event_id="e1",
        uri="/music/a.wav",
        track_id=3,
        catalogue_id=1,
        content_hash="0" * 64,
        created=True,
        model="va-regression@1.0.0",
        collection="c",
        point_id="p",
    )
    data = json.loads(ev.to_bytes())
    assert data["type"] == "track.embedded" and data["track_id"] == 3
    assert ev.key == "acme/jazz/t-1"
