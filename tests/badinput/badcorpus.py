"""The bad-input corpus (issue 5, section 6): requests, JSON-lines uploads, audio files and
Kafka messages that must each get a clear 4xx, an item-level failure or a dead letter,
never a 500 or a hang.

Small cases are literal data here; large and adversarial ones (megabyte bodies, audio
files whose headers claim hours) are generated at test time into temporary folders by the
functions below, so nothing big is committed.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

SR = 16_000
GOOD_STORY = "The storm broke over the harbour and the boats strained at their ropes."


@dataclass(frozen=True)
class HttpCase:
    """One request. ``body`` is sent raw (bytes) or as JSON (anything else); ``expect`` is
    the set of acceptable statuses (every one of them < 500)."""

    name: str
    method: str
    path: str
    body: Any = None
    raw: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    expect: frozenset[int] = frozenset({422})


def _raw(name: str, path: str, body: bytes, expect: set[int] | None = None, **kw: Any) -> HttpCase:
    headers = {"content-type": "application/json", **kw.pop("headers", {})}
    return HttpCase(name, "POST", path, body, True, headers, frozenset(expect or {422}), **kw)


def _json(name: str, path: str, body: Any, expect: set[int] | None = None) -> HttpCase:
    return HttpCase(name, "POST", path, body, False, {}, frozenset(expect or {422}))


S, M, C, T = "/v1/search", "/v1/jobs/match", "/v1/catalogues", "/v1/catalogues/good/tracks"
DEEP = 100_000

HTTP_CASES: list[HttpCase] = [
    # ---- malformed JSON ----
    _raw("truncated-object", S, b'{"text": "abc"'),
    _raw("single-quotes", S, b"{'text': 'abc'}"),
    _raw("trailing-garbage", S, b'{"text": "abc"} junk'),
    _raw("empty-body", S, b""),
    _raw("json-null", S, b"null"),
    _raw("json-string", S, b'"just a string"'),
    _raw("json-array", M, b"[]"),
    _raw("nan-literal", S, b'{"text": "abc", "top_k": NaN}'),
    _raw("infinity-literal", S, b'{"text": "abc", "top_k": Infinity}'),
    _raw("deeply-nested-array", S, b"[" * DEEP + b"]" * DEEP),
    _raw("deeply-nested-object", M, b'{"a":' * DEEP + b"1" + b"}" * DEEP),
    _raw("duplicate-keys", S, b'{"text": "abc", "text": 5}'),
    _raw("bom-prefixed", S, b'\xef\xbb\xbf{"text": "abc"}', {200, 422}),
    _raw("utf16-body", S, '{"text": "abc"}'.encode("utf-16"), {200, 422}),
    # ---- wrong types ----
    _json("text-is-number", S, {"text": 123}),
    _json("text-is-list", S, {"text": ["a", "b"]}),
    _json("top-k-is-string", S, {"text": GOOD_STORY, "top_k": "five"}),
    _json("top-k-negative", S, {"text": GOOD_STORY, "top_k": -1}),
    _json("top-k-huge", S, {"text": GOOD_STORY, "top_k": 10**30}),
    _json("top-k-float", S, {"text": GOOD_STORY, "top_k": 2.5}),
    _json("top-k-bool", S, {"text": GOOD_STORY, "top_k": True}, {200, 422}),
    _json("stories-is-object", M, {"stories": {"id": "a", "text": "b"}}),
    _json("story-id-is-number", M, {"stories": [{"id": 1, "text": GOOD_STORY}]}),
    _json("story-text-is-null", M, {"stories": [{"id": "a", "text": None}]}),
    _json("catalogue-name-is-number", C, {"name": 5}),
    _json("catalogue-name-traversal", C, {"name": "../../etc"}),
    _json("tracks-is-string", T, {"tracks": "file:///etc/passwd"}),
    _json("tags-is-string", T, {"tracks": [{"uri": "/x.wav", "tags": "happy"}]}),
    # ---- missing fields ----
    _json("search-empty-object", S, {}),
    _json("match-no-stories", M, {"top_k": 3}),
    _json("match-empty-stories", M, {"stories": []}),
    _json("story-without-text", M, {"stories": [{"id": "a"}]}),
    _json("track-without-uri", T, {"tracks": [{"title": "x"}]}),
    _json("catalogue-without-name", C, {}),
    # ---- unknown fields ----
    _json("search-unknown-field", S, {"text": GOOD_STORY, "bogus": 1}),
    _json("match-unknown-field", M, {"stories": [{"id": "a", "text": "b"}], "priority": 9}),
    _json("story-unknown-field", M, {"stories": [{"id": "a", "text": "b", "lang": "en"}]}),
    _json("track-unknown-field", T, {"tracks": [{"uri": "/x.wav", "bpm": 120}]}),
    # ---- values out of bounds ----
    _json("empty-story-text", M, {"stories": [{"id": "a", "text": "   "}]}),
    _json("story-id-too-long", M, {"stories": [{"id": "x" * 201, "text": GOOD_STORY}]}),
    _json(
        "too-many-stories",
        M,
        {"stories": [{"id": str(i), "text": GOOD_STORY} for i in range(60)]},
    ),
    _json("unknown-catalogue", S, {"text": GOOD_STORY, "catalogue": "nope"}, {404}),
    _json("empty-search-text", S, {"text": ""}),
    # ---- Unicode edge cases ----
    _json("nul-in-search", S, {"text": "before\u0000after " + GOOD_STORY}, {200, 422}),
    _json(
        "nul-in-story", M, {"stories": [{"id": "a", "text": "x\u0000y " + GOOD_STORY}]}, {202, 422}
    ),
    _json("nul-in-story-id", M, {"stories": [{"id": "a\u0000b", "text": GOOD_STORY}]}, {202, 422}),
    _json("nul-in-catalogue-name", C, {"name": "a\u0000b"}),
    _raw("lone-high-surrogate", S, b'{"text": "a \\ud800 b"}', {200, 422}),
    _raw("lone-low-surrogate", M, b'{"stories": [{"id": "a", "text": "x \\udc00"}]}', {202, 422}),
    _raw("surrogate-story-id", M, b'{"stories": [{"id": "\\udfff", "text": "x y z"}]}', {202, 422}),
    _json("rtl-marks", S, {"text": "\u202e\u200f" + GOOD_STORY + "\u200f\u202c"}, {200}),
    _json("emoji-zwj", S, {"text": "👩‍👩‍👧‍👦 🏳️‍🌈 " * 50 + GOOD_STORY}, {200}),
    _json("only-combining-marks", S, {"text": "\u0301" * 2000}, {200, 422}),
    _json("zero-width-only", S, {"text": "\u200b\u200c\u200d" * 100}, {200, 422}),
    _raw("invalid-utf8", S, b'{"text": "\xff\xfe\xfa"}'),
    _raw("overlong-utf8", S, b'{"text": "\xc0\xaf"}'),
    # ---- binary junk sent as text ----
    _raw("random-bytes-as-json", S, bytes(range(256)) * 4),
    _raw("gzip-bytes-as-json", M, b"\x1f\x8b\x08\x00" + b"\x00" * 64),
    HttpCase(
        "text-plain-body",
        "POST",
        S,
        b"just text",
        True,
        {"content-type": "text/plain"},
        frozenset({415, 422}),
    ),
    HttpCase(
        "form-body",
        "POST",
        S,
        b"text=abc",
        True,
        {"content-type": "application/x-www-form-urlencoded"},
        frozenset({415, 422}),
    ),
    # ---- bad query strings and paths ----
    HttpCase("limit-not-int", "GET", "/v1/jobs?limit=abc"),
    HttpCase("limit-negative", "GET", "/v1/jobs?limit=-5"),
    HttpCase("cursor-junk", "GET", "/v1/jobs?cursor=%00%ff%fe", expect=frozenset({200, 422})),
    HttpCase("state-unknown", "GET", "/v1/jobs?state=exploded"),
    HttpCase("job-id-junk", "GET", "/v1/jobs/%00%ff", expect=frozenset({404, 422})),
    HttpCase("job-id-huge", "GET", "/v1/jobs/" + "x" * 5000, expect=frozenset({404, 422})),
    HttpCase("catalogue-name-bad", "GET", "/v1/catalogues/..%2F..", expect=frozenset({404, 422})),
    HttpCase("track-id-not-int", "GET", "/v1/catalogues/good/tracks/abc"),
    HttpCase(
        "track-id-huge", "GET", f"/v1/catalogues/good/tracks/{10**30}", expect=frozenset({404, 422})
    ),
]


# ---- track URIs refused at registration -----------------------------------------------------
def bad_uris(music: Path) -> list[tuple[str, str]]:
    """``(name, uri)`` refused when registered (4xx; none stored)."""
    return [
        ("relative-path", "music/clip.wav"),
        ("traversal", f"{music}/../../../etc/passwd"),
        ("outside-roots", "/etc/passwd"),
        ("file-url-outside", "file:///etc/shadow"),
        ("nul-in-path", f"{music}/a\u0000.wav"),
        ("link-local-http", "http://169.254.169.254/latest/meta-data/"),
        ("loopback-http", "http://127.0.0.1:6379/"),
        ("private-http", "http://10.0.0.1/a.mp3"),
        ("ftp-scheme", "ftp://example.com/a.mp3"),
        ("javascript-scheme", "javascript:alert(1)"),
        ("empty-host", "http:///a.mp3"),
        ("only-spaces", "   "),
    ]


# ---- adversarial audio (generated at test time) ----------------------------------------------
def _wav_header(
    *,
    channels: int = 1,
    rate: int = SR,
    bits: int = 16,
    data_bytes: int = 0,
    riff_bytes: int | None = None,
    fmt: int = 1,
) -> bytes:
    block = channels * bits // 8
    riff = riff_bytes if riff_bytes is not None else 36 + data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", riff & 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, fmt, channels, rate, rate * block & 0xFFFFFFFF, block, bits)
        + b"data"
        + struct.pack("<I", data_bytes & 0xFFFFFFFF)
    )


def _tone(seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)


def _encoded(fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, _tone(), SR, format=fmt, subtype=subtype)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _float_wav(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, values.astype(np.float32), SR, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def _nan_wav() -> bytes:
    x = _tone()
    x[::7] = np.nan
    return _float_wav(x)


def _all_nan_wav() -> bytes:
    return _float_wav(np.full(3 * SR, np.nan))


def _inf_wav() -> bytes:
    x = _tone()
    x[100:200] = np.inf
    x[300:400] = -np.inf
    return _float_wav(x)


def _sparse_hours(path: Path, hours: float = 3.0) -> Path:
    """A valid 8-bit 8 kHz WAV of ``hours`` of silence, as a sparse file (no disk used)."""
    rate, data = 8000, int(hours * 3600 * 8000)
    with path.open("wb") as f:
        f.write(_wav_header(rate=rate, bits=8, data_bytes=data))
        f.truncate(44 + data)
    return path


def _mp3_bytes(fourq: Path | None) -> bytes | None:
    if fourq is not None:
        clips = sorted(fourq.glob("Q1/*.mp3"))
        if clips:
            return clips[0].read_bytes()
    try:
        return _encoded("MP3")
    except (sf.LibsndfileError, TypeError, ValueError):  # libsndfile without MPEG
        return None


def adversarial_audio(folder: Path, fourq: Path | None = None) -> dict[str, Path]:
    """Write the adversarial audio corpus into ``folder``; name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    flac, ogg = _encoded("FLAC"), _encoded("OGG", "VORBIS")
    makers: dict[str, Callable[[Path], Path]] = {
        "zero-length.wav": lambda p: _write(p, b""),
        "header-only.wav": lambda p: _write(p, _wav_header(data_bytes=0)),
        "header-claims-hours.wav": lambda p: _write(
            p, _wav_header(data_bytes=0xFFFFFFF0, riff_bytes=0xFFFFFFFF) + b"\x00\x01" * 4000
        ),
        "header-huge-rate.wav": lambda p: _write(
            p, _wav_header(rate=0x7FFFFFFF, data_bytes=8000) + b"\x00" * 8000
        ),
        "header-odd-rate.wav": lambda p: _write(
            p, _wav_header(rate=44_101, data_bytes=88_202) + b"\x00\x01" * 44_101
        ),
        "header-zero-rate.wav": lambda p: _write(
            p, _wav_header(rate=0, data_bytes=8000) + b"\x00" * 8000
        ),
        "header-65535-channels.wav": lambda p: _write(
            p, _wav_header(channels=65535, bits=8, data_bytes=0xFFFFFFF0) + b"\x00" * 8000
        ),
        "header-bad-format-tag.wav": lambda p: _write(
            p, _wav_header(fmt=0x1234, data_bytes=8000) + b"\x00" * 8000
        ),
        "one-sample.wav": lambda p: _write(p, _float_wav(np.array([0.5]))),
        "half-second.wav": lambda p: _write(p, _float_wav(_tone(0.5))),
        "nan-samples.wav": lambda p: _write(p, _nan_wav()),
        "all-nan.wav": lambda p: _write(p, _all_nan_wav()),
        "inf-samples.wav": lambda p: _write(p, _inf_wav()),
        "hours-of-silence.wav": lambda p: _sparse_hours(p),
        "random-bytes.wav": lambda p: _write(p, np.random.default_rng(5).bytes(64_000)),
        "text-as.wav": lambda p: _write(p, b"this is not audio, just a note\n" * 100),
        "truncated.flac": lambda p: _write(p, flac[: len(flac) // 3]),
        "flac-header-only.flac": lambda p: _write(p, flac[:42]),
        "truncated.ogg": lambda p: _write(p, ogg[: len(ogg) // 4]),
        "ogg-first-page.ogg": lambda p: _write(p, ogg[:60]),
        "random-bytes.mp3": lambda p: _write(p, np.random.default_rng(6).bytes(20_000)),
        "json-as.flac": lambda p: _write(p, json.dumps({"not": "audio"}).encode()),
    }
    mp3 = _mp3_bytes(fourq)
    if mp3 is not None:
        makers["truncated.mp3"] = lambda p: _write(p, mp3[:2048])
        makers["mp3-tag-only.mp3"] = lambda p: _write(p, b"ID3\x04\x00\x00\x00\x00\x00\x00")
    return {name: make(folder / name) for name, make in makers.items()}


# ---- malformed Kafka messages ---------------------------------------------------------------
def _event(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "track.added",
        "tenant": "acme",
        "catalogue": "moods",
        "track_key": "k1",
        "uri": "/nowhere/a.wav",
    }
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def _j(obj: Any) -> bytes:
    return json.dumps(obj).encode()


#: ``(name, key, value)`` of messages the consumer must dead-letter as ``malformed`` (or
#: ``key_mismatch``) without touching the stores.
KAFKA_MALFORMED: list[tuple[str, bytes | None, bytes]] = [
    ("empty", b"acme/moods/k1", b""),
    ("not-json", b"acme/moods/k1", b"{this is not json"),
    ("not-utf8", b"acme/moods/k1", b'{"type": "\xff\xfe"}'),
    ("binary-junk", b"acme/moods/k1", bytes(range(256))),
    ("json-array", b"acme/moods/k1", b"[1, 2, 3]"),
    ("json-null", b"acme/moods/k1", b"null"),
    ("unknown-type", b"acme/moods/k1", _j(_event(type="track.exploded"))),
    ("newer-schema", b"acme/moods/k1", _j(_event(schema_version=99))),
    ("schema-version-string", b"acme/moods/k1", _j(_event(schema_version="one"))),
    ("missing-tenant", b"acme/moods/k1", _j(_event(tenant=None))),
    ("missing-uri", b"acme/moods/k1", _j(_event(uri=None))),
    ("unknown-field", b"acme/moods/k1", _j(_event(colour="blue"))),
    ("tenant-with-slash", b"ac/me/moods/k1", _j(_event(tenant="ac/me"))),
    ("tenant-too-long", None, _j(_event(tenant="t" * 101))),
    ("uri-too-long", b"acme/moods/k1", _j(_event(uri="/" + "a" * 5000))),
    ("tags-not-strings", b"acme/moods/k1", _j(_event(metadata={"tags": [1, {"x": 2}]}))),
    ("bad-occurred-at", b"acme/moods/k1", _j(_event(occurred_at="yesterday-ish"))),
    ("nul-in-tenant", None, _j(_event(tenant="ac\u0000me"))),
    (
        "lone-surrogate",
        b"acme/moods/k1",
        b'{"type": "track.added", "tenant": "\\ud800", '
        b'"catalogue": "moods", "track_key": "k1", "uri": "/a.wav"}',
    ),
    ("deeply-nested", b"acme/moods/k1", b'{"metadata":' * 50_000 + b"1" + b"}" * 50_000),
    ("over-one-megabyte", b"acme/moods/k1", b'{"pad": "' + b"x" * (1024 * 1024 + 10) + b'"}'),
    ("key-mismatch", b"other/tenant/key", _j(_event())),
]
