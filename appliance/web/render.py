"""The page renderer: Jinja2 templates and asset lookup, packaged and overridable from frontend.dir."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, Final
from urllib.parse import quote

import jinja2

from appliance.config.schema import FrontendConfig
from appliance.errors import PorticoError

log = logging.getLogger("portico.web")

PACKAGE_DIR: Final = Path(__file__).resolve().parent
PACKAGE_TEMPLATES: Final = PACKAGE_DIR / "templates"
PACKAGE_STATIC: Final = PACKAGE_DIR / "static"
PACKAGE_THEMES: Final = PACKAGE_STATIC / "themes"
DEFAULT_THEME: Final = "light"
PACKAGED_LOGO: Final = "img/logo.svg"
ASSET_KINDS: Final = ("static", "theme")

# Files larger than this get no cache-busting version: hashing them on every reload is not worth it.
_MAX_HASHED_BYTES: Final = 2 * 1024 * 1024
_URL_SCHEMES: Final = ("http:", "https:", "data:")


class FrontendError(PorticoError):
    """The frontend folder, theme or a template in it cannot be used. `key` is the config key whose
    value leads to the problem (a reload reports it with that key path)."""

    def __init__(self, message: str, key: str = "frontend.dir") -> None:
        super().__init__(message)
        self.key = key


def _safe_relative(path: str) -> PurePosixPath | None:
    """The request path as relative parts, or None when it could leave its folder or is hidden."""
    if not path or "\x00" in path or "\\" in path or path.startswith("/"):
        return None
    parts = path.split("/")
    # Dot-files are refused too: a custom folder may be a git checkout with .git/ in it.
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        return None
    return PurePosixPath(*parts)


def _is_plain_name(name: str) -> bool:
    return _safe_relative(name) is not None and "/" not in name


def _existing_dir(path: Path) -> Path | None:
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return real if real.is_dir() else None


class Renderer:
    """Renders the login pages and finds the files behind /static/* and /theme/*.

    Construction reads and compiles every template (a syntax error raises FrontendError here, so a
    bad reload is refused before it serves) and hashes the assets; build it off the event loop.
    render() then does no disk I/O. static_file() only stats and resolves paths.
    """

    def __init__(self, frontend: FrontendConfig, static_prefix: str) -> None:
        self._frontend = frontend
        self._prefix = static_prefix.rstrip("/")
        theme = frontend.theme or DEFAULT_THEME
        if not _is_plain_name(theme):
            raise FrontendError(f"frontend.theme: {theme!r} is not a plain folder name", "frontend.theme")
        self._theme = theme

        custom: Path | None = None
        if frontend.dir:
            custom = _existing_dir(Path(frontend.dir))
            if custom is None:
                raise FrontendError(f"frontend.dir: {frontend.dir!r} is not a readable folder")

        # Search order: the custom folder first, then the package.
        static_roots = [custom / "static"] if custom else []
        static_roots.append(PACKAGE_STATIC)
        theme_roots = [custom / "themes" / theme] if custom else []
        # A theme the package does not ship (a custom one) falls back to light for the files it lacks.
        packaged_theme = PACKAGE_THEMES / theme
        theme_roots.append(packaged_theme if packaged_theme.is_dir() else PACKAGE_THEMES / DEFAULT_THEME)
        self._roots: dict[str, list[Path]] = {
            "static": [real for root in static_roots if (real := _existing_dir(root))],
            "theme": [real for root in theme_roots if (real := _existing_dir(root))],
        }
        self._versions = {kind: self._hash_assets(kind) for kind in ASSET_KINDS}

        loaders: list[jinja2.BaseLoader] = []
        if custom and (custom_templates := _existing_dir(custom / "templates")):
            loaders.append(jinja2.FileSystemLoader(custom_templates))
        packaged = jinja2.FileSystemLoader(PACKAGE_TEMPLATES)
        # "portico/<name>" always means the packaged template, so a custom page can extend it.
        loaders += [packaged, jinja2.PrefixLoader({"portico": packaged})]
        self._env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(default_for_string=True, default=True),
            undefined=jinja2.StrictUndefined,  # a context key a route forgot fails its tests loudly
            auto_reload=False,  # compiled once here; a changed template needs a reload (a new Renderer)
            cache_size=-1,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.globals["asset_url"] = self.asset_url
        self._compile_all()

        self._common: dict[str, Any] = {
            "issuer_name": frontend.issuer,
            "logo_url": self._logo_url(frontend.logo_url),
            "theme": theme,
            "static_prefix": self._prefix,
            "extra": dict(frontend.extra),
        }

    @property
    def theme(self) -> str:
        return self._theme

    def render(self, template_name: str, **context: Any) -> str:
        """The page as HTML. The common context (issuer_name, logo_url, theme, static_prefix, extra)
        is added; a key in `context` overrides it."""
        template = self._env.get_template(template_name)
        return template.render({**self._common, **context})

    def asset_url(self, kind: str, path: str) -> str:
        """The URL of an asset, with ?v=<content hash> so that browsers refetch it when it changes."""
        if kind not in ASSET_KINDS:
            raise ValueError(f"asset kind must be one of {ASSET_KINDS}, not {kind!r}")
        url = f"{self._prefix}/{kind}/{quote(path, safe='/')}"
        version = self._versions[kind].get(path)
        return f"{url}?v={version}" if version else url

    def static_file(self, kind: str, path: str) -> Path | None:
        """The file to serve for /<kind>/<path>, or None (unknown kind, traversal, a symlink leading
        out of its folder, a hidden or missing file). The custom folder wins over the package."""
        relative = _safe_relative(path)
        roots = self._roots.get(kind)
        if relative is None or roots is None:
            return None
        for root in roots:
            try:
                real = root.joinpath(relative).resolve(strict=True)
            except (OSError, RuntimeError):  # missing, unreadable, or a symlink loop
                continue
            if real.is_relative_to(root) and real.is_file():
                return real
        return None

    def _logo_url(self, configured: str) -> str:
        packaged = self.asset_url("static", PACKAGED_LOGO)
        if not configured:
            return packaged
        if configured.startswith("/") or configured.lower().startswith(_URL_SCHEMES):
            return configured
        # Dex resolves a relative logoURL (its example is "theme/logo.png") against the issuer path.
        # Point it at our copy of the file, or at the packaged logo when that file does not exist.
        kind, _, rest = configured.partition("/")
        if kind in ASSET_KINDS:
            return self.asset_url(kind, rest) if self.static_file(kind, rest) else packaged
        return f"{self._prefix}/{configured}"

    def _hash_assets(self, kind: str) -> dict[str, str]:
        versions: dict[str, str] = {}
        for relative in self._asset_names(kind):
            real = self.static_file(kind, relative)
            if real is None or real.stat().st_size > _MAX_HASHED_BYTES:
                continue
            versions[relative] = hashlib.sha256(real.read_bytes()).hexdigest()[:10]
        return versions

    def _asset_names(self, kind: str) -> Iterator[str]:
        seen: set[str] = set()
        for root in self._roots[kind]:
            for folder, dirs, files in os.walk(root):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for name in files:
                    relative = Path(folder, name).relative_to(root).as_posix()
                    if relative not in seen:
                        seen.add(relative)
                        yield relative

    def _compile_all(self) -> None:
        for name in self._env.list_templates(filter_func=lambda n: n.endswith(".html")):
            try:
                self._env.get_template(name)
            except jinja2.TemplateError as exc:
                # The file as it is on disk (the custom folder's copy, when that is the broken one).
                where = getattr(exc, "filename", None) or name
                line = getattr(exc, "lineno", None)
                raise FrontendError(f"template {where}" + (f":{line}" if line else "")
                                    + f": {exc.message or exc}") from exc


class LiveRenderer:
    """The renderer of the running configuration, built off the event loop on first use and rebuilt
    when the frontend settings or the files of frontend.dir change (`version`: their fingerprint).

    A reload checks the templates before it is applied (a broken one rejects it); should a rebuild
    still fail here (a file broken again since), the renderer in use keeps serving and the error is
    logged: pages never break because a template was saved half-way.
    """

    def __init__(self) -> None:
        self._key: tuple[FrontendConfig, str, str] | None = None
        self._renderer: Renderer | None = None
        self._lock = asyncio.Lock()

    async def get(self, frontend: FrontendConfig, static_prefix: str, version: str = "") -> Renderer:
        key = (frontend, static_prefix, version)
        renderer = self._renderer
        if renderer is not None and self._key == key:
            return renderer
        async with self._lock:
            if self._renderer is None or self._key != key:
                try:
                    self._renderer = await asyncio.to_thread(Renderer, frontend, static_prefix)
                except FrontendError as exc:
                    if self._renderer is None:
                        raise
                    log.error("the login pages keep their previous templates: %s", exc)
                self._key = key
            return self._renderer
