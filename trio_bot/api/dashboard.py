"""The dashboard page at `/`: one self-contained HTML file (inline CSS and JS, no CDN, works offline).

The page reads the token from the URL fragment (`#token=...`, which browsers
never send to the server), keeps it in sessionStorage, and calls the API with
it. The Content-Security-Policy allows exactly the inline script and style
of this page (by hash) and connections back to this server.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from importlib import resources


@functools.cache
def html() -> str:
    return (resources.files(__package__) / "dashboard.html").read_text(encoding="utf-8")


def _hashes(tag: str) -> str:
    bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", html(), flags=re.S)
    return " ".join("'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() + "'"
                    for b in bodies)


@functools.cache
def csp() -> str:
    return (f"default-src 'none'; script-src {_hashes('script')}; style-src {_hashes('style')}; "
            "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")
