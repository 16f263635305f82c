"""Device login for the kubectl plugin: the device authorization grant (RFC 8628), for a terminal with no
browser (an SSH session, a jump host)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

from appliance.kubelogin.loopback import open_browser, pkce_pair
from appliance.kubelogin.provider import LoginError, Provider, TokenEndpointError, Tokens

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL_S = 5  # RFC 8628 3.2
SLOW_DOWN_STEP_S = 5  # RFC 8628 3.5


def _positive_int(body: dict[str, Any], key: str, default: int) -> int:
    value = body.get(key)
    return value if isinstance(value, int) and value > 0 else default


def device_login(provider: Provider, *, launch_browser: bool, timeout_s: float, out: TextIO,
                 sleep: Callable[[float], None] = time.sleep) -> Tokens:
    """Asks for a device code, shows the user code and where to enter it, then polls the token endpoint
    at the interval the issuer asks for until the person has approved, refused, or the code expired."""
    settings = provider.settings
    verifier, challenge = pkce_pair()
    endpoint = provider.endpoints().device_authorization
    body = provider.post_form(endpoint, {
        "scope": " ".join(settings.scopes),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }, "device authorization endpoint")
    device_code, user_code, uri = (body.get(k) for k in ("device_code", "user_code", "verification_uri"))
    if not (isinstance(device_code, str) and device_code and user_code and uri):
        raise LoginError("the device authorization endpoint answered without device_code, user_code "
                         "and verification_uri")
    complete = body.get("verification_uri_complete")
    print(f"To log in to {settings.issuer}, open\n\n    {uri}\n\nand enter the code  {user_code}",
          file=out, flush=True)
    if isinstance(complete, str) and complete:
        print(f"\n(or open {complete} , which fills the code in)", file=out, flush=True)
    print("", file=out, flush=True)
    if launch_browser and isinstance(complete, str) and complete:
        open_browser(complete)
    interval = _positive_int(body, "interval", DEFAULT_INTERVAL_S)
    expires_in = _positive_int(body, "expires_in", int(timeout_s))
    deadline = time.monotonic() + min(float(expires_in), timeout_s)
    while True:
        sleep(interval)
        if time.monotonic() > deadline:
            raise LoginError("the device code expired before the login was approved")
        try:
            answer = provider.token({
                "grant_type": GRANT_TYPE,
                "device_code": device_code,
                "code_verifier": verifier,
            })
        except TokenEndpointError as exc:
            if exc.error == "authorization_pending":
                continue
            if exc.error == "slow_down":
                interval += SLOW_DOWN_STEP_S
                continue
            if exc.error == "expired_token":
                raise LoginError("the device code expired before the login was approved") from exc
            if exc.error == "access_denied":
                raise LoginError("the login was refused in the browser") from exc
            raise
        return provider.tokens_from(answer, nonce=None)
