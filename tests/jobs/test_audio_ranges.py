"""Byte ranges of a track's audio from each kind of source (:func:`storycue.sources.open_audio`):
a local file, an http origin that serves ranges and one that ignores them (a local server),
and s3:// (moto's S3 server on 127.0.0.1); plus the Range header parser."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from storycue.config import IngestSourceSettings, Settings
from storycue.sources import (
    AudioBytes,
    ByteRange,
    RangeNotSatisfiableError,
    SourceFetchError,
    SourceGoneError,
    audio_content_type,
    open_audio,
    parse_range,
)
from support.local import QuietHandler, serve_http
from support.s3 import local_s3

PAYLOAD = bytes(range(256)) * 300  # 76,800 bytes: more than one 64 KiB chunk


def _read(audio: AudioBytes) -> bytes:
    try:
        return b"".join(audio.chunks)
    finally:
        audio.close()


class _Origin(QuietHandler):
    def do_GET(self) -> None:
        if self.path == "/gone.mp3":
            self.send_response(404)
            self.end_headers()
            return
        if self.path == "/broken.mp3":
            self.send_response(500)
            self.end_headers()
            return
        body, status, extra = PAYLOAD, 200, {}
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if self.path == "/ranged.mp3" and m:
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else len(PAYLOAD) - 1
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                self.end_headers()
                return
            end = min(end, len(PAYLOAD) - 1)
            body, status = PAYLOAD[start : end + 1], 206
            extra = {"Content-Range": f"bytes {start}-{end}/{len(PAYLOAD)}"}
        self.send_response(status)
        self.send_header("Content-Type", "audio/mpeg")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    with serve_http(_Origin) as base:
        yield base


def test_parse_range() -> None:
    assert parse_range(None, 100) is None
    assert parse_range("bytes=0-9", 100) == ByteRange(0, 9, 100)
    assert parse_range("bytes=90-", 100) == ByteRange(90, 99, 100)
    assert parse_range("bytes=90-500", 100) == ByteRange(90, 99, 100)  # clipped to the end
    assert parse_range("bytes=-10", 100) == ByteRange(90, 99, 100)  # suffix
    assert parse_range("bytes=-500", 100) == ByteRange(0, 99, 100)
    # Ignored (the whole resource is sent): several ranges, other units, nonsense, end < start.
    for header in ("bytes=0-1,5-6", "items=0-1", "bytes=a-b", "bytes=-", "bytes=9-3"):
        assert parse_range(header, 100) is None, header
    for header in ("bytes=100-", "bytes=-0"):
        with pytest.raises(RangeNotSatisfiableError):
            parse_range(header, 100)
    assert ByteRange(10, 19, 100).content_range == "bytes 10-19/100"
    assert ByteRange(10, 19, 100).length == 10


def test_content_types() -> None:
    assert audio_content_type("/m/a.MP3") == "audio/mpeg"
    assert audio_content_type("s3://b/k/a.flac") == "audio/flac"
    assert audio_content_type("https://h/a.wav?x=1") == "audio/wav"
    assert audio_content_type("https://h/stream", "audio/ogg; codecs=opus") == "audio/ogg"
    assert audio_content_type("https://h/a.mp3", "text/html") == "audio/mpeg"  # not audio: ignored
    assert audio_content_type("/m/a.bin") == "application/octet-stream"


def test_local_file_ranges(tmp_path: Path) -> None:
    root = tmp_path / "music"
    root.mkdir()
    f = root / "a.wav"
    f.write_bytes(PAYLOAD)
    s = Settings(home=tmp_path / "home", sources=IngestSourceSettings(allowed_roots=[root]))
    whole = open_audio(str(f), s)
    assert not whole.partial and whole.span == ByteRange(0, len(PAYLOAD) - 1, len(PAYLOAD))
    assert whole.content_type == "audio/wav" and _read(whole) == PAYLOAD
    part = open_audio(str(f), s, "bytes=70000-")
    assert part.partial and _read(part) == PAYLOAD[70000:]
    assert _read(open_audio(str(f), s, "bytes=-5")) == PAYLOAD[-5:]
    unread = open_audio(str(f), s, "bytes=0-0")
    unread.close()  # closing an unread stream is fine
    with pytest.raises(RangeNotSatisfiableError):
        open_audio(str(f), s, f"bytes={len(PAYLOAD)}-")
    f.unlink()
    with pytest.raises(SourceGoneError, match="gone"):
        open_audio(str(f), s)


def test_http_origin_with_and_without_range_support(origin: str, tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "home", sources=IngestSourceSettings(allow_private_addresses=True))
    for name in ("ranged.mp3", "plain.mp3"):  # plain ignores Range: it is sliced here
        url = f"{origin}/{name}"
        whole = open_audio(url, s)
        assert not whole.partial and whole.content_type == "audio/mpeg"
        assert _read(whole) == PAYLOAD, name
        part = open_audio(url, s, "bytes=1000-70999")
        assert part.partial and part.span == ByteRange(1000, 70999, len(PAYLOAD)), name
        assert _read(part) == PAYLOAD[1000:71000], name
        with pytest.raises(RangeNotSatisfiableError):
            open_audio(url, s, "bytes=999999-")
    with pytest.raises(SourceGoneError):
        open_audio(f"{origin}/gone.mp3", s)
    with pytest.raises(SourceFetchError, match="500"):
        open_audio(f"{origin}/broken.mp3", s)


def test_s3_ranges_from_a_local_s3_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with local_s3(monkeypatch, "music-bucket") as (client, endpoint):
        client.put_object(Bucket="music-bucket", Key="a.flac", Body=PAYLOAD)
        s = Settings(home=tmp_path / "home", sources=IngestSourceSettings(s3_endpoint_url=endpoint))
        whole = open_audio("s3://music-bucket/a.flac", s)
        assert whole.content_type == "audio/flac" and _read(whole) == PAYLOAD
        part = open_audio("s3://music-bucket/a.flac", s, "bytes=-100")
        assert part.partial and part.span == ByteRange(len(PAYLOAD) - 100, len(PAYLOAD) - 1,
                                                       len(PAYLOAD))  # fmt: skip
        assert _read(part) == PAYLOAD[-100:]
        with pytest.raises(SourceGoneError):
            open_audio("s3://music-bucket/none.flac", s)
