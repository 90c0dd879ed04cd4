"""Container health check: GET one URL on this container and exit 0 when it answers 2xx.

The URL is ``STORYCUE_HEALTHCHECK_URL`` when set (workers and the consumer: their
``/metrics`` server), else the gateway's ``/healthz`` on ``STORYCUE_SERVICE__PORT``.
Only the standard library is used, so the check costs no import of storycue or torch.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("STORYCUE_SERVICE__PORT", "8080")
    url = os.environ.get("STORYCUE_HEALTHCHECK_URL") or f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as resp:
            ok = 200 <= resp.status < 300
    except (urllib.error.URLError, OSError) as exc:
        sys.stderr.write(f"unhealthy: {url}: {exc}\n")
        return 1
    if not ok:
        sys.stderr.write(f"unhealthy: {url}: HTTP {resp.status}\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
