"""`portico kubectl-login`'s options and its one sequence: cached token, else refresh, else log in; then
print the ExecCredential for kubectl."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    # The rest is imported when the plugin runs, so that building `portico`'s parser stays cheap.
    import httpx

    from appliance.clock import Clock
    from appliance.kubelogin.cache import TokenCache
    from appliance.kubelogin.provider import Provider, Tokens

DEFAULT_SCOPES = "openid email profile groups offline_access"
SECRET_ENV = "PORTICO_CLIENT_SECRET"  # noqa: S105 (a variable name, not a secret)
MAX_MARGIN_S = 10  # renew this long before exp, so a token does not expire in the middle of a request
HTTP_TIMEOUT_S = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The plugin's options, for `portico kubectl-login` and `python -m appliance.kubelogin` alike."""
    parser.add_argument("--issuer", required=True, help="the issuer URL, exactly as in the ID tokens")
    parser.add_argument("--client-id", required=True, help="the OAuth2 client (e.g. kubernetes)")
    parser.add_argument("--client-secret", default=None,
                        help=f"for a confidential client (default: ${SECRET_ENV}; a public client has none)")
    parser.add_argument("--scopes", default=DEFAULT_SCOPES,
                        help=f"space- or comma-separated; openid is always added (default: {DEFAULT_SCOPES})")
    parser.add_argument("--grant", choices=("browser", "device"), default="browser",
                        help="browser: code + PKCE on a loopback redirect; device: RFC 8628 user code "
                             "(default: browser)")
    parser.add_argument("--cache-dir", default=None,
                        help="token cache (default: $XDG_CACHE_HOME/portico, else ~/.kube/cache/portico)")
    parser.add_argument("--ca-file", default=None, help="CA bundle (PEM) for the issuer's certificate")
    parser.add_argument("--redirect-port", type=int, default=0,
                        help="loopback port for --grant browser (default: any free port; a confidential "
                             "client needs the one registered as http://127.0.0.1:PORT/callback)")
    parser.add_argument("--open-browser", action="store_true",
                        help="also start a browser on the login URL (it is always printed on stderr)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for the person to log in (default: 300)")


def parse_scopes(text: str) -> tuple[str, ...]:
    seen: list[str] = []
    for scope in ["openid", *text.replace(",", " ").split()]:
        if scope not in seen:
            seen.append(scope)
    return tuple(seen)


def is_fresh(tokens: Tokens, now: int) -> bool:
    """Usable for this kubectl call: more than a margin (10 s, or a quarter of a short lifetime) left."""
    margin = min(MAX_MARGIN_S, max(1, (tokens.expiry - tokens.issued_at) // 4))
    return tokens.expiry - now > margin


def _http_client(ca_file: str | None) -> httpx.Client:
    import ssl

    import httpx

    from appliance.kubelogin.provider import LoginError

    verify: ssl.SSLContext | bool = True
    if ca_file:
        try:
            verify = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise LoginError(f"cannot load the CA file {ca_file}: {exc}") from exc
    return httpx.Client(timeout=HTTP_TIMEOUT_S, verify=verify, follow_redirects=False)


def _refresh(provider: Provider, cached: Tokens) -> Tokens:
    body = provider.token({"grant_type": "refresh_token", "refresh_token": cached.refresh_token})
    return provider.tokens_from(body, nonce=None, previous_refresh=cached.refresh_token)


def _login(provider: Provider, args: argparse.Namespace, out: TextIO) -> Tokens:
    if args.grant == "device":
        from appliance.kubelogin.device import device_login

        tokens = device_login(provider, launch_browser=args.open_browser, timeout_s=args.timeout, out=out)
    else:
        from appliance.kubelogin.loopback import browser_login

        tokens = browser_login(provider, port=args.redirect_port, launch_browser=args.open_browser,
                               timeout_s=args.timeout, out=out)
    print("Logged in.", file=out, flush=True)
    return tokens


def obtain(cache: TokenCache, provider: Provider, args: argparse.Namespace, clock: Clock,
           out: TextIO) -> Tokens:
    """The cached ID token while fresh (no network at all), else a refreshed one, else a new login.

    A refresh token the issuer refuses (expired, revoked, rotated away) leads to a new login; an issuer
    that cannot be reached or fails (5xx) is an error, since a login would fail the same way.
    """
    from appliance.kubelogin.provider import TokenEndpointError

    cached = cache.load()
    if cached is not None and is_fresh(cached, int(clock.now().timestamp())):
        return cached
    if cached is not None and cached.refresh_token:
        try:
            tokens = _refresh(provider, cached)
        except TokenEndpointError as exc:
            if exc.status >= 500:
                raise
            print(f"portico kubectl-login: the refresh token was refused ({exc.error}); logging in again",
                  file=out, flush=True)
        else:
            cache.store(tokens)
            return tokens
    tokens = _login(provider, args, out)
    cache.store(tokens)
    return tokens


def run(args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None,
        clock: Clock | None = None) -> int:
    """Prints the ExecCredential on stdout and returns 0; prints why on stderr and returns 1 otherwise."""
    from appliance.clock import SystemClock
    from appliance.kubelogin.cache import TokenCache, default_cache_dir
    from appliance.kubelogin.execcred import exec_credential, requested_api_version
    from appliance.kubelogin.provider import LoginError, Provider, Settings

    out, err = stdout or sys.stdout, stderr or sys.stderr
    secret = args.client_secret if args.client_secret is not None else os.environ.get(SECRET_ENV, "")
    settings = Settings(issuer=args.issuer, client_id=args.client_id, scopes=parse_scopes(args.scopes),
                        client_secret=secret)
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir(os.environ)
    clock = clock or SystemClock()
    try:
        with _http_client(args.ca_file) as http:
            cache = TokenCache(cache_dir, settings, warn=err)
            with cache.locked():
                tokens = obtain(cache, Provider(settings, http, clock), args, clock, err)
    except LoginError as exc:
        print(f"portico kubectl-login: {exc}", file=err, flush=True)
        return 1
    except OSError as exc:  # the cache directory or its lock: not writable, full, ...
        print(f"portico kubectl-login: {exc}", file=err, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    credential = exec_credential(tokens.id_token, tokens.expiry, requested_api_version(os.environ))
    print(json.dumps(credential), file=out, flush=True)
    return 0


def main(argv: list[str]) -> int:
    """`portico kubectl-login ARGS`: kubectl runs this as an exec credential plugin."""
    parser = argparse.ArgumentParser(
        prog="portico kubectl-login",
        description="kubectl exec credential plugin: logs in to an OIDC issuer (Portico) and prints an "
                    "ExecCredential with the ID token. Prompts go to stderr, the credential to stdout.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
