"""Who is asking: the API key names the account, the HMAC signature and the time window prove it.

Checked the way Binance checks a SIGNED request, each refusal in its shape: an unknown key is
-2015 (HTTP 401), a wrong signature -1022, a timestamp outside `recvWindow` -1021.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from adapters.sim.fake_binance import params as p
from adapters.sim.fake_binance.account import Account, now_ms
from adapters.sim.fake_binance.params import Rejection
from adapters.sim.fake_binance.wire import Request

DEFAULT_RECV_WINDOW = 5000
MAX_RECV_WINDOW = 60000


def unsigned(part: str) -> str:
    """A query string or body without its `signature=` item: what was signed."""
    return "&".join(item for item in part.split("&") if not item.startswith("signature="))


def authenticate(accounts: Mapping[str, Account], request: Request, params: dict[str, str]) -> Account:
    """The account a signed request is for, or the Rejection Binance would answer."""
    account = accounts.get(request.headers.get("x-mbx-apikey", ""))
    if account is None:
        raise Rejection(-2015, "Invalid API-key, IP, or permissions for action.", status=401)
    signature = params.get("signature")
    if not signature:
        raise p.missing("signature")
    payload = unsigned(request.query) + unsigned(request.body)
    expected = hmac.new(account.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise Rejection(-1022, "Signature for this request is not valid.")
    timestamp = p.integer(params, "timestamp")
    window = p.integer(params, "recvWindow") if "recvWindow" in params else DEFAULT_RECV_WINDOW
    if not 0 < window <= MAX_RECV_WINDOW:
        raise Rejection(-1131, f"recvWindow must be less than {MAX_RECV_WINDOW}.")
    now = now_ms()
    if timestamp >= now + 1000 or now - timestamp > window:
        raise Rejection(-1021, "Timestamp for this request is outside of the recvWindow.")
    return account
