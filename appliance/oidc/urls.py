"""The issuer URL: its pieces, and the absolute paths and URLs of the endpoints under it."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from urllib.parse import urlsplit

# Redirect URIs with a protocol meaning rather than a place (Dex's constants).
REDIRECT_URI_OOB = "urn:ietf:wg:oauth:2.0:oob"
DEVICE_CALLBACK_PATH = "/device/callback"


@dataclass(frozen=True)
class IssuerURL:
    """The configured issuer, split once; `path` is the route prefix ("" for an issuer at the root)."""

    url: str
    scheme: str
    netloc: str
    path: str

    @classmethod
    def parse(cls, issuer: str) -> IssuerURL:
        parts = urlsplit(issuer)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"issuer {issuer!r} is not an absolute http(s) URL")
        path = parts.path.rstrip("/")
        return cls(url=issuer, scheme=parts.scheme, netloc=parts.netloc, path=path)

    @property
    def secure(self) -> bool:
        return self.scheme == "https"

    def abs_path(self, *parts: str) -> str:
        """The path of an endpoint under the issuer, cleaned like Go's path.Join ("/dex" + "/token")."""
        joined = posixpath.join(self.path or "/", *(part.lstrip("/") for part in parts))
        cleaned = posixpath.normpath(joined)
        return "/" + cleaned.lstrip("/") if cleaned != "." else "/"

    def abs_url(self, *parts: str) -> str:
        return f"{self.scheme}://{self.netloc}{self.abs_path(*parts)}"
