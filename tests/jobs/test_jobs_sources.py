"""Fetching registered tracks: local paths, http(s) (a local server) and s3:// (moto's S3
server on 127.0.0.1), with the address and size checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storycue.config import IngestSourceSettings, LimitSettings, Settings
from storycue.errors import InvalidInputError, SourceNotAllowedError
from storycue.sources import SourceFetchError, check_uri, fetch
from support.local import QuietHandler, serve_http
from support.s3 import local_s3

PAYLOAD = b"RIFF" + bytes(range(256)) * 64


class _Handler(QuietHandler):
    def do_GET(self) -> None:
        if self.path == "/a.wav":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path == "/hop":
            self.send_response(302)
            self.send_header("Location", "/a.wav")
            self.end_headers()
        elif self.path == "/to-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.end_headers()
        else:
            self.send_response(404)
            self.end_headers()


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    with serve_http(_Handler) as base:
        yield base


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(home=tmp_path / "home", **kw)


def test_http_fetch_with_private_addresses_allowed(http_base: str, tmp_path: Path) -> None:
    s = _settings(tmp_path, sources=IngestSourceSettings(allow_private_addresses=True))
    with fetch(f"{http_base}/a.wav", s) as path:
        assert path.read_bytes() == PAYLOAD
        kept = path
    assert not kept.exists()  # temporary downloads are removed
    with fetch(f"{http_base}/hop", s) as path:
        assert path.read_bytes() == PAYLOAD
    with pytest.raises(InvalidInputError), fetch(f"{http_base}/to-file", s):
        pass
    with pytest.raises(SourceFetchError, match="404"), fetch(f"{http_base}/missing", s):
        pass
    small = _settings(
        tmp_path,
        sources=IngestSourceSettings(allow_private_addresses=True),
        limits=LimitSettings(max_audio_bytes=1000),
    )
    with pytest.raises(InvalidInputError, match="limit"), fetch(f"{http_base}/a.wav", small):
        pass


def test_private_hosts_are_refused_by_default(http_base: str, tmp_path: Path) -> None:
    s = _settings(tmp_path)
    for uri in (f"{http_base}/a.wav", "http://localhost/a.wav", "https://192.168.1.5/x"):
        with pytest.raises(InvalidInputError, match="private"):
            check_uri(uri, s)


def test_local_paths(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    f = root / "sub" / "a.wav"
    f.write_bytes(b"x")
    s = _settings(tmp_path, sources=IngestSourceSettings(allowed_roots=[root]))
    assert check_uri(str(f), s).path == f.resolve()
    assert check_uri(f"file://{f}", s).path == f.resolve()
    with fetch(str(f), s) as path:
        assert path == f.resolve()
    with pytest.raises(SourceFetchError), fetch(str(root / "sub" / "missing.wav"), s):
        pass
    with pytest.raises(InvalidInputError, match="no allowed root"):
        check_uri(str(f), _settings(tmp_path))
    with pytest.raises(InvalidInputError):
        check_uri(str(root) + "x/../a.wav", s)


def test_s3_fetch_from_a_local_s3_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with local_s3(monkeypatch, "music-bucket") as (client, endpoint):
        client.put_object(Bucket="music-bucket", Key="clips/a.wav", Body=PAYLOAD)
        s = _settings(tmp_path, sources=IngestSourceSettings(s3_endpoint_url=endpoint))
        with fetch("s3://music-bucket/clips/a.wav", s) as path:
            assert path.read_bytes() == PAYLOAD
        with (
            pytest.raises(SourceFetchError, match="NoSuchKey"),
            fetch("s3://music-bucket/clips/none.wav", s),
        ):
            pass


def test_policy_refusals_are_forbidden_and_garbage_is_invalid(tmp_path: Path) -> None:
    """A URI this deployment may not read is SourceNotAllowedError (HTTP 403); a URI that
    cannot be parsed is plain invalid input (422), never an unhandled ValueError."""
    s = _settings(tmp_path)
    for uri in ("http://localhost/a.wav", "/etc/passwd", "/a/../b.wav"):
        with pytest.raises(SourceNotAllowedError):
            check_uri(uri, s)
    for uri in ("https://[0a94]", "http://[::1", "http://user:pw@example.com/a.wav"):
        with pytest.raises(InvalidInputError) as err:
            check_uri(uri, s)
        assert not isinstance(err.value, SourceNotAllowedError), uri
