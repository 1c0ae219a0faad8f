"""Sign hrefs right before each read, through ``planetary_computer``'s token cache (one SAS token per container).

Stored hrefs stay unsigned. ``planetary_computer.sas.get_token`` caches one token per (account, container) and
refreshes it 60 s before expiry; :meth:`Signer.invalidate` drops a token the server has rejected (HTTP 403) so the
next :meth:`Signer.sign` fetches a fresh one. The token endpoint is ``PC_SDK_SAS_URL`` (default: Planetary
Computer's), read once per process by ``planetary_computer``.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import parse_qs, urlparse

from geoprom3e.errors import ImageryError

log = logging.getLogger(__name__)

BLOB_DOMAIN = ".blob.core.windows.net"


def account_container(href: str) -> tuple[str, str] | None:
    """(storage account, container) an href belongs to, or ``None`` for a non-http href.

    Azure blob URLs give ``(account, first path segment)``; any other http host gives ``("local", first segment)``
    (used with ``signing="always"`` against a local token endpoint).
    """
    u = urlparse(href)
    if u.scheme not in ("http", "https"):
        return None
    parts = [p for p in u.path.split("/") if p]
    container = parts[0] if parts else ""
    if u.netloc.endswith(BLOB_DOMAIN):
        return u.netloc.split(".")[0], container
    return "local", container


class Signer:
    """Adds a SAS token to hrefs that need one (``mode``: ``auto``, ``always`` or ``never``)."""

    def __init__(self, mode: str = "auto") -> None:
        self.mode = mode
        self._lock = threading.Lock()
        self.invalidations = 0

    def needs_signing(self, href: str) -> bool:
        """Whether ``href`` gets a token under this mode (never when it already carries one)."""
        if self.mode == "never":
            return False
        u = urlparse(href)
        if set(parse_qs(u.query)) & {"st", "se", "sp", "sig"}:
            return False  # already signed: planetary_computer would return it unchanged anyway
        if self.mode == "always":
            return u.scheme in ("http", "https")
        return u.netloc.endswith(BLOB_DOMAIN) and u.netloc != "ai4edatasetspublicassets" + BLOB_DOMAIN

    def _token_url(self, account: str, container: str) -> str:
        from planetary_computer.settings import Settings

        return f"{Settings.get().sas_url}/{account}/{container}"

    def sign(self, href: str) -> str:
        """``href`` with a valid token appended (or unchanged when it needs none)."""
        if not self.needs_signing(href):
            return href
        from planetary_computer.sas import get_token

        account, container = account_container(href)
        try:
            with self._lock:  # one token request per container even when 32 threads ask at once
                token = get_token(account, container)
        except Exception as exc:
            raise ImageryError(f"cannot get a SAS token for {account}/{container} from the token endpoint: {exc}"
                               ) from None
        sep = "&" if urlparse(href).query else "?"
        return f"{href}{sep}{token.token}"

    def invalidate(self, href: str, signed: str) -> None:
        """Forget the token used in ``signed`` (rejected with a 403) so the next sign of ``href`` fetches a new one.

        A token already replaced by another thread is left alone, so 32 threads hitting one 403 cost one refresh.
        """
        if not self.needs_signing(href):
            return
        from planetary_computer.sas import TOKEN_CACHE

        account, container = account_container(href)
        key = self._token_url(account, container)
        with self._lock:
            cached = TOKEN_CACHE.get(key)
            if cached is not None and cached.token in signed:
                del TOKEN_CACHE[key]
                self.invalidations += 1
                log.info("dropped the SAS token of %s/%s after a 403", account, container)
