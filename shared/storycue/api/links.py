"""Short-lived signed links to a track's audio.

A browser's ``<audio>`` element fetches its ``src`` itself: it cannot send an
``Authorization`` header, and an API key must never travel in a URL. So an authenticated
caller asks for links (``POST /v1/tracks/audio-links``) and gets URLs that carry an
expiry and an HMAC-SHA256 signature over (tenant, track, expiry) instead; the audio route
accepts either such a signature or an API key. A link grants one tenant's one track until
it expires, nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from storycue.config import Settings
from storycue.errors import AuthenticationError


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class AudioLinkSigner:
    """Signs and checks audio links with one secret key."""

    key: bytes
    ttl_s: int = 3600

    @classmethod
    def from_settings(cls, settings: Settings) -> AudioLinkSigner:
        secret = settings.service.audio_link_secret
        key = secret.get_secret_value().encode() if secret is not None else secrets.token_bytes(32)
        return cls(key=key, ttl_s=settings.service.audio_link_ttl_s)

    def _sig(self, tenant: str, track_id: int, expires: int) -> str:
        msg = f"audio\n{tenant}\n{track_id}\n{expires}".encode("utf-8", "surrogatepass")
        return _b64(hmac.new(self.key, msg, hashlib.sha256).digest())

    def sign(self, tenant: str, track_id: int, *, now: float | None = None) -> tuple[str, int]:
        """``(query string, expiry)`` of a link to ``track_id`` for ``tenant``."""
        expires = int(now if now is not None else time.time()) + self.ttl_s
        query = urlencode(
            {"tenant": tenant, "expires": expires, "sig": self._sig(tenant, track_id, expires)}
        )
        return query, expires

    def verify(
        self, tenant: str, track_id: int, expires: int, sig: str, *, now: float | None = None
    ) -> str:
        """The link's tenant, or :class:`AuthenticationError` (bad or expired link)."""
        # compare bytes: compare_digest refuses non-ASCII str (a forged link is a 401, not a 500)
        if not hmac.compare_digest(
            self._sig(tenant, track_id, expires).encode("ascii"),
            sig.encode("utf-8", "surrogatepass"),
        ):
            raise AuthenticationError("the audio link's signature is not valid")
        if expires < (now if now is not None else time.time()):
            raise AuthenticationError("the audio link has expired: ask for a new one")
        return tenant
