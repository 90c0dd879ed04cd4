"""Where registered tracks come from: local paths under allowed roots, s3:// and http(s)://.

:func:`check_uri` validates a URI when a track is registered (and again right before it
is fetched): a local path must resolve, symlinks followed, inside one of
``settings.sources.allowed_roots`` (no traversal, no symlink escape); an http(s) URL must
name a host whose every address is public (no loopback, link-local, private, multicast or
reserved address) unless ``settings.sources.allow_private_addresses``; credentials inside
URLs are refused (secrets come from the environment). :func:`fetch` then yields a local
file to decode: the file itself for a local path, a size-capped temporary download for
the others (http via httpx without automatic redirects, each redirect re-checked; s3 via
boto3 on ``settings.sources.s3_endpoint_url``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tempfile
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urljoin, urlsplit

from storycue.config import Settings
from storycue.errors import (
    ConfigurationError,
    InvalidInputError,
    SourceNotAllowedError,
    StorycueError,
)
from storycue.log import get_logger

log = get_logger(__name__)

Scheme = Literal["file", "s3", "http", "https"]
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_MAX_REDIRECTS = 5


class SourceFetchError(StorycueError):
    """A registered URI could not be fetched (unreachable, HTTP error, missing object)."""

    code = "source_fetch_error"


@dataclass(frozen=True)
class CheckedURI:
    """A validated source URI."""

    uri: str
    scheme: Scheme
    path: Path | None = None  # file
    host: str | None = None  # http(s)
    bucket: str | None = None  # s3
    key: str | None = None  # s3


def _refuse(message: str, **detail: object) -> InvalidInputError:
    return InvalidInputError(message, detail={"field": "uri", **detail})


def _forbid(message: str, **detail: object) -> SourceNotAllowedError:
    return SourceNotAllowedError(message, detail={"field": "uri", **detail})


def _within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def check_local_path(raw: str, settings: Settings) -> Path:
    """The real path of a local file under an allowed root, or :class:`InvalidInputError`."""
    if "\x00" in raw:
        raise _refuse("the path contains a NUL character")
    path = Path(raw)
    if not path.is_absolute():
        raise _refuse("a local track path must be absolute")
    roots = [Path(r).expanduser().resolve() for r in settings.sources.allowed_roots]
    if not roots:
        raise _forbid(
            "local paths are not allowed: no allowed root is configured "
            "(STORYCUE_SOURCES__ALLOWED_ROOTS)"
        )
    if ".." in path.parts:
        raise _forbid("'..' is not allowed in a track path")
    real = Path(os.path.realpath(path))
    if not any(_within(real, root) for root in roots):
        raise _forbid("the path is outside the allowed roots (after following links)")
    return real


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_global) and not (
        ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_multicast or ip.is_reserved
    )


def check_host(host: str, port: int | None, settings: Settings) -> None:
    """Refuse a host that does not resolve, or resolves to a non-public address."""
    try:
        infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise _refuse(f"host {host!r} does not resolve", host=host) from exc
    addresses = sorted({str(info[4][0]) for info in infos})
    if not addresses:
        raise _refuse(f"host {host!r} does not resolve", host=host)
    if settings.sources.allow_private_addresses:
        return
    private = [a for a in addresses if not _public(a)]
    if private:
        raise _forbid(
            f"host {host!r} resolves to a loopback, link-local or private address; "
            "such sources are refused unless STORYCUE_SOURCES__ALLOW_PRIVATE_ADDRESSES is set",
            host=host,
        )


def check_uri(uri: str, settings: Settings) -> CheckedURI:
    """Validate a track URI (see the module doc); :class:`InvalidInputError` when refused."""
    if not isinstance(uri, str) or not uri.strip() or uri != uri.strip():
        raise _refuse("a track URI must be a non-empty string without surrounding blanks")
    if len(uri) > 4096:
        raise _refuse("a track URI is at most 4096 characters")
    if uri.startswith("/"):
        return CheckedURI(uri=uri, scheme="file", path=check_local_path(uri, settings))
    try:
        parts = urlsplit(uri)
    except ValueError as exc:  # e.g. a bracketed host that is no IP address: http://[0a94]
        raise _refuse(f"the URI cannot be parsed: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise _refuse("file:// URIs must not name a host")
        return CheckedURI(
            uri=uri, scheme="file", path=check_local_path(unquote(parts.path), settings)
        )
    if scheme in ("http", "https"):
        if parts.username is not None or parts.password is not None:
            raise _refuse("credentials in URLs are not accepted")
        host = parts.hostname
        if not host:
            raise _refuse("the URL has no host")
        try:
            port = parts.port
        except ValueError as exc:
            raise _refuse("the URL has an invalid port") from exc
        check_host(host, port, settings)
        return CheckedURI(uri=uri, scheme=scheme, host=host)  # type: ignore[arg-type]
    if scheme == "s3":
        bucket = parts.netloc
        key = parts.path.lstrip("/")
        if not _BUCKET.fullmatch(bucket or ""):
            raise _refuse(f"{bucket!r} is not a valid S3 bucket name")
        if not key:
            raise _refuse("the s3:// URI has no object key")
        if parts.query or parts.fragment:
            raise _refuse("s3:// URIs take no query or fragment")
        return CheckedURI(uri=uri, scheme="s3", bucket=bucket, key=key)
    raise _refuse(
        f"unsupported URI scheme {scheme or '(none)'!r}: use an absolute path, file://, "
        "s3:// or http(s)://"
    )


def _write_capped(chunks: Iterator[bytes], dest: Any, max_bytes: int, label: str) -> int:
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise InvalidInputError(
                f"{label} is larger than the {max_bytes}-byte limit "
                "(STORYCUE_LIMITS__MAX_AUDIO_BYTES)",
                detail={"max_bytes": max_bytes},
            )
        dest.write(chunk)
    return size


def _http_get(
    client: Any, uri: str, settings: Settings, headers: dict[str, str] | None = None
) -> tuple[Any, str]:
    """``(streaming response, final URL)`` of a GET of ``uri`` that follows up to
    :data:`_MAX_REDIRECTS` redirects itself, checking every hop like the first
    (:func:`check_uri`; only http(s) targets). The caller closes the response."""
    import httpx

    url = uri
    try:
        for _ in range(_MAX_REDIRECTS + 1):
            resp = client.send(client.build_request("GET", url, headers=headers), stream=True)
            if not resp.is_redirect:
                return resp, url
            resp.close()
            location = resp.headers.get("location")
            if not location:
                raise SourceFetchError(f"{url}: redirect without a location")
            url = urljoin(url, location)
            check_uri(url, settings)  # every hop is checked again
            if urlsplit(url).scheme not in ("http", "https"):
                raise _refuse("redirects may only go to http(s) URLs")
    except httpx.HTTPError as exc:
        raise SourceFetchError(f"{url}: {type(exc).__name__}: {exc}") from exc
    raise SourceFetchError(f"{uri}: more than {_MAX_REDIRECTS} redirects")


def _fetch_http(checked: CheckedURI, settings: Settings, dest: Any) -> None:
    import httpx

    max_bytes = settings.limits.max_audio_bytes
    with httpx.Client(timeout=settings.sources.fetch_timeout_s, follow_redirects=False) as client:
        resp, url = _http_get(client, checked.uri, settings)
        try:
            if resp.status_code != 200:
                raise SourceFetchError(
                    f"{url}: HTTP {resp.status_code}", detail={"status": resp.status_code}
                )
            _write_capped(resp.iter_bytes(1 << 16), dest, max_bytes, url)
        except httpx.HTTPError as exc:
            raise SourceFetchError(f"{url}: {type(exc).__name__}: {exc}") from exc
        finally:
            resp.close()


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client on the configured endpoint (credentials from the environment)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # pragma: no cover - boto3 is a dependency
        raise ConfigurationError("s3:// sources need boto3 (pip install boto3)") from exc
    return boto3.client(
        "s3",
        endpoint_url=settings.sources.s3_endpoint_url,
        region_name=settings.sources.s3_region,
        config=Config(
            connect_timeout=settings.sources.fetch_timeout_s,
            read_timeout=settings.sources.fetch_timeout_s,
            retries={"max_attempts": 3},
        ),
    )


def _fetch_s3(checked: CheckedURI, settings: Settings, dest: Any) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    assert checked.bucket is not None and checked.key is not None
    try:
        obj = s3_client(settings).get_object(Bucket=checked.bucket, Key=checked.key)
        body = obj["Body"]
        size = int(obj.get("ContentLength") or 0)
        if size > settings.limits.max_audio_bytes:
            raise InvalidInputError(
                f"{checked.uri} is {size} bytes, over the {settings.limits.max_audio_bytes}-byte "
                "limit (STORYCUE_LIMITS__MAX_AUDIO_BYTES)"
            )
        _write_capped(
            iter(lambda: body.read(1 << 16), b""),
            dest,
            settings.limits.max_audio_bytes,
            checked.uri,
        )
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "error"))
        raise SourceFetchError(f"{checked.uri}: S3 {code}", detail={"s3_error": code}) from exc
    except BotoCoreError as exc:
        raise SourceFetchError(f"{checked.uri}: {exc}") from exc


@contextmanager
def fetch(uri: str, settings: Settings) -> Iterator[Path]:
    """A local file holding the track at ``uri`` (re-checked first); temporary downloads
    are deleted on exit."""
    checked = check_uri(uri, settings)
    if checked.scheme == "file":
        assert checked.path is not None
        if not checked.path.is_file():
            raise SourceFetchError(f"{uri}: no such file", detail={"uri": uri})
        yield checked.path
        return
    suffix = Path(urlsplit(uri).path).suffix[:10]
    fd, name = tempfile.mkstemp(prefix="storycue-fetch-", suffix=suffix)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as dest:
            if checked.scheme == "s3":
                _fetch_s3(checked, settings, dest)
            else:
                _fetch_http(checked, settings, dest)
        log.debug("source fetched", scheme=checked.scheme, bytes=path.stat().st_size)
        yield path
    finally:
        path.unlink(missing_ok=True)


# ---- byte ranges of a source (for playback) ------------------------------------------------
class SourceGoneError(StorycueError):
    """The track is registered, but its audio is no longer at its source (file deleted,
    object removed, URL answering 404/410)."""

    code = "source_gone"


class RangeNotSatisfiableError(InvalidInputError):
    """The requested byte range lies outside the audio (HTTP 416)."""

    code = "range_not_satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(
            f"the requested range is outside the {size}-byte audio", detail={"size": size}
        )
        self.size = size


_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_AUDIO_TYPES = {
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".webm": "audio/webm",
}
_CHUNK = 1 << 16


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start..end`` (inclusive) of a ``size``-byte resource."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range of an HTTP ``Range`` header against a ``size``-byte resource.

    ``None`` means "send it all": no header, or one this server may ignore (another unit,
    several ranges, syntax it does not know; RFC 9110 §14.2). A range that starts past the
    end, or an empty suffix, raises :class:`RangeNotSatisfiableError`.
    """
    if header is None or "," in header:
        return None
    m = _RANGE.match(header)
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiableError(size)
        return ByteRange(max(0, size - n), size - 1, size)
    start = int(first)
    if last and int(last) < start:
        return None  # syntactically invalid: ignore, as the RFC says
    if start >= size:
        raise RangeNotSatisfiableError(size)
    return ByteRange(start, min(int(last) if last else size - 1, size - 1), size)


def audio_content_type(uri: str, reported: str | None = None) -> str:
    """The media type of a track's audio: the source's own when it names an audio type,
    else one guessed from the file extension, else ``application/octet-stream``."""
    if reported and reported.split(";")[0].strip().lower().startswith("audio/"):
        return reported.split(";")[0].strip()
    suffix = Path(urlsplit(uri).path if "://" in uri else uri).suffix.lower()
    return _AUDIO_TYPES.get(suffix, "application/octet-stream")


@dataclass
class AudioBytes:
    """An open byte stream of a track's audio: ``chunks`` yields the bytes of ``span``
    (the whole resource when ``partial`` is false; ``span`` is ``None`` when the source
    did not say how long it is). Call ``close`` when done, read or not."""

    content_type: str
    span: ByteRange | None
    partial: bool
    chunks: Iterator[bytes]
    close: Callable[[], None] = lambda: None


def open_audio(uri: str, settings: Settings, range_header: str | None = None) -> AudioBytes:
    """Open the audio at ``uri`` (re-checked first, like :func:`fetch`) for streaming,
    honouring one byte range. :class:`SourceGoneError` when the audio is gone,
    :class:`SourceFetchError` when the source fails otherwise."""
    checked = check_uri(uri, settings)
    if checked.scheme == "file":
        return _open_file(checked, range_header)
    if checked.scheme == "s3":
        return _open_s3(checked, settings, range_header)
    return _open_http(checked, settings, range_header)


def _stream_file(path: Path, span: ByteRange) -> Generator[bytes, None, None]:
    with path.open("rb") as fh:
        fh.seek(span.start)
        left = span.length
        while left > 0:
            chunk = fh.read(min(_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def _whole(size: int) -> ByteRange:
    return ByteRange(0, max(size - 1, -1), size)


def _open_file(checked: CheckedURI, range_header: str | None = None) -> AudioBytes:
    assert checked.path is not None
    try:
        size = checked.path.stat().st_size
    except FileNotFoundError as exc:
        raise SourceGoneError(
            f"{checked.uri}: the file is gone", detail={"uri": checked.uri}
        ) from exc
    if not checked.path.is_file():
        raise SourceGoneError(f"{checked.uri}: not a file", detail={"uri": checked.uri})
    span = parse_range(range_header, size)
    stream = _stream_file(checked.path, span or _whole(size))
    return AudioBytes(
        content_type=audio_content_type(checked.uri),
        span=span or _whole(size),
        partial=span is not None,
        chunks=stream,
        close=stream.close,
    )


def _gone_or_failed(uri: str, status: int | str, gone: bool) -> StorycueError:
    if gone:
        return SourceGoneError(f"{uri}: the audio is gone ({status})", detail={"uri": uri})
    return SourceFetchError(f"{uri}: {status}", detail={"uri": uri, "status": status})


def _open_s3(checked: CheckedURI, settings: Settings, range_header: str | None) -> AudioBytes:
    from botocore.exceptions import BotoCoreError, ClientError

    assert checked.bucket is not None and checked.key is not None
    client = s3_client(settings)
    try:
        head = client.head_object(Bucket=checked.bucket, Key=checked.key)
        size = int(head.get("ContentLength") or 0)
        span = parse_range(range_header, size)
        extra = {"Range": f"bytes={span.start}-{span.end}"} if span is not None else {}
        obj = client.get_object(Bucket=checked.bucket, Key=checked.key, **extra)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "error"))
        raise _gone_or_failed(
            checked.uri, f"S3 {code}", code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket")
        ) from exc
    except BotoCoreError as exc:
        raise SourceFetchError(f"{checked.uri}: {exc}") from exc
    body = obj["Body"]

    def chunks() -> Iterator[bytes]:
        try:
            yield from iter(lambda: body.read(_CHUNK), b"")
        finally:
            body.close()

    return AudioBytes(
        content_type=audio_content_type(checked.uri, head.get("ContentType")),
        span=span or _whole(size),
        partial=span is not None,
        chunks=chunks(),
        close=body.close,
    )


def _open_http(checked: CheckedURI, settings: Settings, range_header: str | None) -> AudioBytes:
    """Ask the origin for the range itself; an origin that ignores ranges (200) is sliced
    here, so the client still gets a 206."""
    import httpx

    wanted = range_header if range_header and _RANGE.match(range_header) else None
    client = httpx.Client(timeout=settings.sources.fetch_timeout_s, follow_redirects=False)
    try:
        resp, url = _http_get(client, checked.uri, settings, {"Range": wanted} if wanted else {})
    except BaseException:
        client.close()
        raise

    def close() -> None:
        resp.close()
        client.close()

    status = resp.status_code
    if status not in (200, 206):
        close()
        if status == 416:
            total = resp.headers.get("content-range", "").rpartition("/")[2]
            raise RangeNotSatisfiableError(int(total) if total.isdigit() else 0)
        raise _gone_or_failed(checked.uri, f"HTTP {status}", status in (404, 410))
    ctype = audio_content_type(checked.uri, resp.headers.get("content-type"))
    if status == 206:
        m = _CONTENT_RANGE.match(resp.headers.get("content-range", ""))
        if m is None or m.group(3) == "*":
            close()
            raise SourceFetchError(f"{url}: a 206 without a usable Content-Range")
        span = ByteRange(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        return AudioBytes(ctype, span, True, _relay(resp.iter_bytes(_CHUNK), close), close)
    length = resp.headers.get("content-length")
    if length is None or not length.isdigit():  # unknown length: no ranges, stream it all
        return AudioBytes(ctype, None, False, _relay(resp.iter_bytes(_CHUNK), close), close)
    size = int(length)
    try:
        sliced = parse_range(wanted, size)
    except RangeNotSatisfiableError:
        close()
        raise
    whole = sliced or _whole(size)
    return AudioBytes(
        ctype,
        whole,
        sliced is not None,
        _relay(_slice(resp.iter_bytes(_CHUNK), whole), close),
        close,
    )


def _slice(chunks: Iterator[bytes], span: ByteRange) -> Iterator[bytes]:
    """The bytes ``span.start..span.end`` of a stream that starts at byte 0."""
    pos = 0
    for chunk in chunks:
        lo, hi = max(span.start - pos, 0), min(span.end + 1 - pos, len(chunk))
        if lo < hi:
            yield chunk[lo:hi]
        pos += len(chunk)
        if pos > span.end:
            return


def _relay(chunks: Iterator[bytes], close: Callable[[], None]) -> Iterator[bytes]:
    try:
        yield from chunks
    finally:
        close()
