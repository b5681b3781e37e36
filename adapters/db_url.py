"""Database URLs (`--db`): parsed once, here, and never shown with a secret in them.

`parse_db_url` is the only parser: it decides SQLite or PostgreSQL, checks the
parts a driver would otherwise choke on later (a port of `abc` or `99999`, an
unknown scheme), and carries a redacted form for every message. `redact`
works on any text, even a URL too broken to parse: it hides the user and
password of anything shaped `scheme://user:password@`, and the value of every
`password=`/`sslpassword=` parameter (PostgreSQL accepts both in the query).
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

import attrs

from engine.checks import PORT
from engine.errors import ConfigError

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql", "postgres")
EXPECTED = "a URL like sqlite:///trio-bot.db or postgresql://user@host:5432/dbname"
MAX_LENGTH = 4096

# scheme://userinfo@ — userinfo may itself hold an unescaped "@" (the last one ends it).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s]*@)")
# password=… in a query string or a key=value connection string, quoted or not.
_SECRET_PARAM = re.compile(r"(?i)(?P<key>\b(?:ssl)?password|\bpassfile)(?P<eq>\s*=\s*)"
                           r"(?P<value>'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^&\s#;]*)")
SECRET_KEYS = ("password", "sslpassword", "passfile")


def redact(text: str) -> str:
    """`text` with every URL user and password, and every password parameter, replaced by ***."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}***@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m['key']}{m['eq']}***", text)


def secrets_of(url: str) -> list[str]:
    """The secret values inside `url` (to scrub from a driver's error text), longest first."""
    found: list[str] = []
    match = _USERINFO.search(url)
    if match:
        userinfo = match["userinfo"][:-1]
        user, _, password = userinfo.partition(":")
        found += [user, unquote(user), password, unquote(password)]
    for m in _SECRET_PARAM.finditer(url):
        value = m["value"].strip("'\"")
        found += [value, unquote(value)]
    return sorted({s for s in found if len(s) >= 2}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """An error text from a driver, with anything secret from `url` (and any URL in it) hidden."""
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return redact(text)


@attrs.frozen
class DbUrl:
    kind: str  # "sqlite" or "postgresql"
    url: str = attrs.field(repr=False)  # as given: may hold a password, never print it
    safe: str  # for messages and logs
    path: str | None = None  # the SQLite file (or ":memory:")


def parse_db_url(url: str, *, key: str = "--db") -> DbUrl:
    """The one parser of `--db` values; anything unusable is a ConfigError showing it redacted."""
    safe = redact(url)

    def bad(why: str = "") -> ConfigError:
        return ConfigError(key, safe, EXPECTED + (f" ({why})" if why else ""))

    if not isinstance(url, str) or not url or len(url) > MAX_LENGTH or "\x00" in url:
        raise bad("empty, too long or holding a NUL byte")
    if url.startswith(SQLITE_PREFIX):
        path = url.removeprefix(SQLITE_PREFIX)
        if not path:
            raise bad("no file path after sqlite:///")
        return DbUrl("sqlite", url, safe, path)
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in POSTGRES_SCHEMES:
        raise bad(f"unknown scheme {scheme!r}" if scheme else "")
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port  # raises ValueError for a non-number or one beyond 65535
        host = parts.hostname
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError as exc:
        raise bad(scrub(str(exc), url)) from None
    if port is not None and (not PORT.contains(port) or port == 0):
        raise bad(f"port {port} is not in 1..65535")
    if host is not None and not host.isprintable():
        raise bad("the host name holds control characters")
    for name, _ in query:
        if not name.isprintable():
            raise bad("a query parameter name holds control characters")
    return DbUrl("postgresql", url, safe)
