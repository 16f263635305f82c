"""The one root error type and the typed errors every layer shares."""

from __future__ import annotations


class PorticoError(Exception):
    """Root of every error Portico raises on purpose."""


class NotFound(PorticoError):
    """A stored object does not exist."""


class AlreadyExists(PorticoError):
    """A stored object with that id exists already."""


class ConflictError(PorticoError):
    """A compare-and-swap update lost too many races in a row."""


class ConnectorError(PorticoError):
    """An upstream identity source failed (an outage, not a wrong password).

    `connector_data`, when set, is what a refresh had already renewed upstream before it failed (an
    upstream that rotates its refresh token has spent the old one): the caller keeps it for the retry."""

    connector_data: bytes | None = None


class OAuthError(PorticoError):
    """An OAuth 2.0 / OIDC protocol error: `error` code, HTTP status, optional description.

    `description` is shown to clients only for 4xx errors; server faults are never described.
    """

    def __init__(self, error: str, description: str = "", status: int = 400) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description
        self.status = status

    def as_dict(self) -> dict[str, str]:
        body = {"error": self.error}
        if self.description and self.status < 500:
            body["error_description"] = self.description
        return body


class DisplayedError(PorticoError):
    """An error shown to a person as a page (no safe redirect back to the client exists)."""

    def __init__(self, title: str, message: str, status: int = 400) -> None:
        super().__init__(f"{title}: {message}")
        self.title = title
        self.message = message
        self.status = status


class RedirectError(PorticoError):
    """An OAuth error delivered to the client by redirect (after the redirect URI was validated)."""

    def __init__(self, error: OAuthError, redirect_uri: str, state: str, fragment: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.redirect_uri = redirect_uri
        self.state = state
        self.fragment = fragment
