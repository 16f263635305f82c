"""The public listener's ASGI stack: the telemetry middleware, the fast path, and the Quart app behind them,
imported and built on the first request that needs it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from appliance.oidc.deps import Deps
from appliance.oidc.token import TokenEndpoint
from appliance.telemetry.metrics import HTTPStats
from appliance.telemetry.middleware import OTHER, ASGIApp, TelemetryMiddleware, route_resolver
from appliance.web.fastpath import FastPath
from appliance.web.lazy import LazyApp

if TYPE_CHECKING:
    from quart import Quart

__all__ = ["KeyGate", "PublicApp", "lazy_routes", "public_app"]


class _Keys(Protocol):
    """What the gate reads of the KeyManager."""

    @property
    def loaded(self) -> bool: ...

    def wait_loaded(self) -> Awaitable[bool]: ...


class KeyGate:
    """Holds every request but discovery until the signing keys are loaded.

    `portico serve` opens its listeners while the first key is generated (RSA: 50-500 ms) or read from
    storage, so discovery, which needs no key, is answered at once; /keys, the token endpoints, the pages
    (whose logins end in signed tokens) and the health check wait for the keys instead of failing. Once
    they are loaded this is one attribute read per request.
    """

    def __init__(self, app: ASGIApp, keys: _Keys, open_paths: Iterable[str]) -> None:
        self.app = app
        self._keys = keys
        self._open = frozenset(open_paths)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not self._keys.loaded and scope["type"] == "http" and scope["path"] not in self._open:
            await self._keys.wait_loaded()
        await self.app(scope, receive, send)

@dataclass(frozen=True)
class PublicApp:
    """The stack served on the public listener (`asgi`), and the lazily built Quart app inside it."""

    asgi: ASGIApp
    lazy: LazyApp[Quart]
    fast: FastPath


def public_app(deps: Deps, tokens: TokenEndpoint, stats: HTTPStats,
               trusted: Callable[[str], bool] | None = None) -> PublicApp:
    """Outermost the middleware (request ids, metrics by route), then the key gate (while the first
    keys load, only discovery goes on), then the fast path (the documents, /token, introspection,
    userinfo, health; with the app's token endpoint), then the Quart app, built when the fast path first
    hands it a request."""
    lazy: LazyApp[Quart] = LazyApp(lambda: build_app(deps, tokens), load=_import_app)

    def allowed_methods(path: str) -> Iterable[str] | None:
        app = lazy.app
        return None if app is None else app.url_map.bind("localhost").allowed_methods(path)

    fast = FastPath(lazy, deps, allowed_methods, token_endpoint=tokens)
    prefix = deps.snapshot.issuer.path
    routes = lazy_routes(lazy, prefix, fast.paths)
    gate = KeyGate(fast, deps.keys, [prefix + "/.well-known/openid-configuration"])
    return PublicApp(TelemetryMiddleware(gate, stats, routes, trusted=trusted), lazy, fast)


def build_app(deps: Deps, tokens: TokenEndpoint) -> Quart:
    """The Quart app of `portico serve`: create_app, and the middleware's request id in its log lines."""
    from quart import g

    from appliance.telemetry.context import current_request_id
    from appliance.web.app import create_app

    app = create_app(deps, token_endpoint=tokens)

    @app.before_request
    async def adopt_request_id() -> None:
        # Runs after the app's own tagging: its "[id]" log prefixes and header use the middleware's id.
        g.request_id = current_request_id()

    return app


def _import_app() -> None:
    """What the Quart app imports (Quart, Flask, Werkzeug, Jinja2, Hypercorn's parts, the routes): run in a
    thread when the app is first needed, so the event loop keeps serving the fast path meanwhile."""
    import appliance.web.app  # noqa: F401  (importing it is the point)


def lazy_routes(lazy: LazyApp[Quart], prefix: str, fixed: Iterable[str]) -> Callable[[str, str], str]:
    """The middleware's route labels (route_resolver's) without the app's URL map while the app is not
    built. A fast-path path is one route, whatever the method (a 405 is labelled with its route too), so
    it is labelled by its path (tests/perf checks route_resolver agrees); any other request was handed
    to the app, which was built for it, and is labelled from its map ("other" if the build failed)."""
    labels = {path: path[len(prefix):] or "/" for path in fixed}
    resolver: list[Callable[[str, str], str]] = []

    def route(method: str, path: str) -> str:
        label = labels.get(path)
        if label is not None:
            return label
        if not resolver:
            app = lazy.app
            if app is None:
                return OTHER
            resolver.append(route_resolver(app.url_map, prefix))
        return resolver[0](method, path)

    return route
