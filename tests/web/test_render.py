"""The page renderer: every template, escaping, custom folders, themes and safe static-file lookup."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jinja2
import pytest

from appliance.config.schema import FrontendConfig
from appliance.web.render import PACKAGE_STATIC, FrontendError, Renderer

EVIL = "<script>alert(1)</script>"
LONG = "Enterprise Resource Planning and Supply Chain Analytics Dashboard " * 4

CONNECTORS = [
    {"id": "ldap", "name": "Corporate LDAP", "type": "ldap", "url": "/dex/auth/ldap?a=1&b=2"},
    {"id": "github", "name": "GitHub", "type": "github", "url": "/dex/auth/github"},
]

# Every template with the context its route passes.
CONTEXTS: dict[str, dict[str, Any]] = {
    "login.html": {"client_name": "Grafana", "connectors": CONNECTORS},
    "password.html": {
        "post_url": "/dex/auth/local/login?state=s",
        "username_prompt": "Email Address",
        "username": "",
        "invalid": False,
        "back_url": "/dex/auth?x=1",
        "client_name": "Grafana",
        "csrf_token": "csrf-123",
    },
    "approval.html": {
        "post_url": "/dex/approval",
        "client_name": "Grafana",
        "scopes": ["View basic profile information", "View your email address"],
        "req": "req-1",
        "hmac": "mac-1",
        "csrf_token": "csrf-123",
    },
    "error.html": {"title": "Bad Request", "message": "Unregistered redirect_uri.", "status": 400},
    "oob.html": {"code": "q3mfbx7dkz4yp2jw6lhc5nrv"},
    "device.html": {
        "post_url": "/dex/device/auth/verify_code",
        "user_code": "",
        "invalid": False,
        "csrf_token": "csrf-123",
    },
    "device_success.html": {"client_name": "kubectl"},
    "logout.html": {"post_url": "/dex/logout", "client_name": "Grafana", "csrf_token": "csrf-123"},
}

# What each page must say.
EXPECTED_TEXT = {
    "login.html": [
        "Log in to Acme",
        "to continue to",
        "Grafana",
        "Log in with Corporate LDAP",
        "Log in with GitHub",
    ],
    "password.html": ["Log in to Acme", "Email Address", "Password", "Choose another login method"],
    "approval.html": ["Grant access", "would like to", "View your email address", "Grant Access", "Cancel"],
    "error.html": ["Bad Request", "Unregistered redirect_uri.", "400"],
    "oob.html": ["Login successful", "q3mfbx7dkz4yp2jw6lhc5nrv"],
    "device.html": ["Connect a device", "Device code"],
    "device_success.html": ["Device connected", "kubectl"],
    "logout.html": ["Sign out?", "Grafana"],
}


class Tags(HTMLParser):
    """Collects every start tag with its attributes, and the visible text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]

    def one(self, tag: str, **attrs: str) -> dict[str, str | None]:
        found = self.find(tag, **attrs)
        assert len(found) == 1, (tag, attrs, found)
        return found[0]


def renderer(**frontend: Any) -> Renderer:
    frontend.setdefault("issuer", "Acme")
    return Renderer(FrontendConfig(**frontend), "/dex")


def render(r: Renderer, name: str, **overrides: Any) -> str:
    return r.render(name, **{**CONTEXTS[name], **overrides})


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_every_template_renders_with_its_context(name: str, theme: str) -> None:
    html = render(renderer(theme=theme), name)
    page = Tags(html)
    text = " ".join(" ".join(page.text).split())
    for expected in EXPECTED_TEXT[name]:
        assert expected in text, expected
    assert html.startswith("<!DOCTYPE html>")
    assert page.one("html")["lang"] == "en"
    assert page.one("html")["data-theme"] == theme
    title = re.search(r"<title>(.*?)</title>", html)
    assert title and title.group(1).endswith("· Acme")
    logo = page.one("img", **{"class": "brand-logo"})
    assert logo["alt"] == "Acme"
    assert (logo["src"] or "").startswith("/dex/static/img/logo.svg?v=")
    assert page.find("meta", name="viewport")
    # Every form posts, carries the CSRF token, and every visible input has a label.
    for form in page.find("form"):
        assert form["method"] == "post"
        assert page.one("input", type="hidden", name="csrf_token")["value"] == "csrf-123"
    labels = {a["for"] for a in page.find("label")}
    for field in page.find("input"):
        if field.get("type") != "hidden":
            assert field["id"] in labels


def test_common_context_and_overrides() -> None:
    r = renderer(issuer="Example Inc", extra={"footer": "Internal use only"})
    html = render(r, "error.html")
    assert "Example Inc" in html
    assert "Internal use only" in html
    assert "Powered by Portico" not in html
    # A route may override a common value, e.g. a client's own logo.
    assert 'src="/dex/img/client.png"' in render(r, "error.html", logo_url="/dex/img/client.png")


def test_password_form_fields() -> None:
    page = Tags(render(renderer(), "password.html"))
    form = page.one("form")
    assert form["action"] == "/dex/auth/local/login?state=s"
    login = page.one("input", name="login")
    password = page.one("input", name="password")
    assert login["autocomplete"] == "username"
    assert password["autocomplete"] == "current-password"
    assert password["type"] == "password"
    assert "autofocus" in login and "autofocus" not in password
    assert not page.find("div", role="alert")
    assert page.one("a", href="/dex/auth?x=1")


def test_password_failure_prefills_and_alerts() -> None:
    page = Tags(render(renderer(), "password.html", username="jane", invalid=True, back_url=""))
    login = page.one("input", name="login")
    assert login["value"] == "jane"
    assert login["aria-invalid"] == "true"
    # With the username kept, the cursor goes to the password.
    assert "autofocus" in page.one("input", name="password") and "autofocus" not in login
    assert "Incorrect email address or password" in " ".join(page.text)
    assert page.one("div", role="alert")
    assert not page.find("a")  # no back link when back_url is empty


def test_password_optional_context_may_be_left_out() -> None:
    html = renderer().render("password.html", post_url="/p", csrf_token="csrf-123")
    page = Tags(html)
    assert page.one("label", **{"for": "login"}) is not None
    assert ">Username</label>" in html
    assert "to continue to" not in html


def test_approval_form() -> None:
    page = Tags(render(renderer(), "approval.html"))
    assert page.one("form")["action"] == "/dex/approval"
    assert page.one("input", name="req")["value"] == "req-1"
    assert page.one("input", name="hmac")["value"] == "mac-1"
    buttons = page.find("button", type="submit", name="approval")
    assert [b["value"] for b in buttons] == ["approve", "deny"]  # approve first: the Enter-key default
    assert len(page.find("li")) == 2


def test_device_and_logout_forms() -> None:
    page = Tags(render(renderer(), "device.html", user_code="BDFG-HJKL", invalid=True))
    code = page.one("input", name="user_code")
    assert code["value"] == "BDFG-HJKL" and "autofocus" in code
    assert page.one("form")["action"] == "/dex/device/auth/verify_code"
    assert page.one("div", role="alert")

    page = Tags(render(renderer(), "logout.html", fields={"state": "s1", "id_token_hint": "t"}))
    assert page.one("input", name="state")["value"] == "s1"
    assert page.one("input", name="id_token_hint")["value"] == "t"
    assert page.one("button", type="submit")


def test_missing_required_context_fails_loudly() -> None:
    with pytest.raises(jinja2.UndefinedError):
        renderer().render(
            "approval.html", post_url="/a", client_name="c", req="r", hmac="h", csrf_token="t"
        )  # scopes forgotten


def test_user_input_is_escaped_everywhere() -> None:
    r = renderer()
    evil_connectors = [{"id": EVIL, "name": EVIL, "type": EVIL, "url": '/x?"><script>'}]
    pages: dict[str, dict[str, Any]] = {
        "login.html": {"client_name": EVIL, "connectors": evil_connectors},
        "password.html": {
            "username_prompt": EVIL,
            "username": EVIL,
            "invalid": True,
            "client_name": EVIL,
            "back_url": EVIL,
            "post_url": EVIL,
            "csrf_token": EVIL,
        },
        "approval.html": {
            "client_name": EVIL,
            "scopes": [EVIL],
            "req": EVIL,
            "hmac": EVIL,
            "csrf_token": EVIL,
        },
        "error.html": {"title": EVIL, "message": EVIL, "status": EVIL},
        "oob.html": {"code": EVIL},
        "device.html": {"user_code": EVIL, "invalid": True, "post_url": EVIL, "csrf_token": EVIL},
        "device_success.html": {"client_name": EVIL},
        "logout.html": {"client_name": EVIL, "fields": {EVIL: EVIL}, "csrf_token": EVIL},
    }
    for name, context in pages.items():
        html = render(r, name, **context)
        assert "<script" not in html, name
        assert "&lt;script&gt;" in html, name
    evil_issuer = Renderer(FrontendConfig(issuer=EVIL, extra={"footer": EVIL}), "/dex")
    html = render(evil_issuer, "login.html")
    assert "<script" not in html and html.count("&lt;script&gt;") >= 3


ASSET_ATTR = re.compile(r'\b(?:src|href|action)="([^"]*)"')


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_pages_are_csp_clean_and_self_contained(name: str, theme: str) -> None:
    html = render(renderer(theme=theme), name)
    assert "<script" not in html
    assert " style=" not in html and "<style" not in html
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers
    for url in ASSET_ATTR.findall(html):
        assert url.startswith("/dex/"), url


def test_configured_logo_url_is_the_only_external_link() -> None:
    html = render(renderer(logo_url="https://intranet.example/logo.png"), "login.html")
    external = [u for u in ASSET_ATTR.findall(html) if not u.startswith("/dex/")]
    assert external == ["https://intranet.example/logo.png"]


def test_packaged_assets_reference_nothing_external() -> None:
    for path in PACKAGE_STATIC.rglob("*"):
        if path.is_file():
            text = path.read_text()
            text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
            assert "http://" not in text and "https://" not in text, path
            assert "@import" not in text and "@font-face" not in text, path


def test_dark_theme_selects_the_dark_stylesheet() -> None:
    light, dark = renderer(theme="light"), renderer(theme="dark")
    light_css, dark_css = light.static_file("theme", "theme.css"), dark.static_file("theme", "theme.css")
    assert light_css is not None and dark_css is not None
    assert dark_css.parent.name == "dark" and light_css.parent.name == "light"
    assert "color-scheme: dark" in dark_css.read_text()
    assert "color-scheme: light" in light_css.read_text()
    # The link carries the content hash, so a theme change on reload is refetched.
    assert light.asset_url("theme", "theme.css") != dark.asset_url("theme", "theme.css")
    link = Tags(render(dark, "login.html")).find("link", rel="stylesheet")
    assert [a["href"] for a in link] == [
        dark.asset_url("static", "css/portico.css"),
        dark.asset_url("theme", "theme.css"),
    ]


def test_static_prefix_is_joined_cleanly() -> None:
    root = Renderer(FrontendConfig(), "")
    assert root.asset_url("static", "css/portico.css").startswith("/static/css/portico.css?v=")
    assert Renderer(FrontendConfig(), "/dex/").asset_url("theme", "x.css") == "/dex/theme/x.css"
    with pytest.raises(ValueError, match="asset kind"):
        root.asset_url("other", "x")


def make_custom(tmp_path: Path) -> Path:
    custom = tmp_path / "web"
    (custom / "templates").mkdir(parents=True)
    (custom / "static" / "css").mkdir(parents=True)
    (custom / "themes" / "dark").mkdir(parents=True)
    return custom


def test_custom_dir_overrides_a_template(tmp_path: Path) -> None:
    custom = make_custom(tmp_path)
    (custom / "templates" / "error.html").write_text("<p>custom {{ title }} at {{ issuer_name }}</p>")
    # A custom page may extend the packaged one and change one block.
    (custom / "templates" / "login.html").write_text(
        '{% extends "portico/login.html" %}{% block footer %}Corp IT helpdesk{% endblock %}'
    )
    r = renderer(dir=str(custom))
    assert (
        render(r, "error.html", title=EVIL) == "<p>custom &lt;script&gt;alert(1)&lt;/script&gt; at Acme</p>"
    )
    login = render(r, "login.html")
    assert "Corp IT helpdesk" in login and "Log in with GitHub" in login and "Powered by" not in login
    assert "Powered by Portico" in render(r, "device_success.html")  # not overridden: packaged


def test_custom_base_layout_applies_to_packaged_pages(tmp_path: Path) -> None:
    custom = make_custom(tmp_path)
    (custom / "templates" / "base.html").write_text(
        "<main id=custom>{% block content %}{% endblock %}</main>"
    )
    html = render(renderer(dir=str(custom)), "oob.html")
    assert html.startswith("<main id=custom>") and "q3mfbx7dkz4yp2jw6lhc5nrv" in html


def test_custom_dir_overrides_static_and_theme_files(tmp_path: Path) -> None:
    custom = make_custom(tmp_path)
    (custom / "static" / "css" / "portico.css").write_text("body { color: red; }")
    (custom / "static" / "extra.css").write_text("p {}")
    (custom / "themes" / "dark" / "theme.css").write_text(":root { --bg: black; }")
    packaged = renderer(theme="dark")
    r = renderer(dir=str(custom), theme="dark")
    assert r.static_file("static", "css/portico.css") == (custom / "static" / "css" / "portico.css").resolve()
    assert r.static_file("static", "extra.css") == (custom / "static" / "extra.css").resolve()
    assert r.static_file("theme", "theme.css") == (custom / "themes" / "dark" / "theme.css").resolve()
    # Files the custom folder lacks still come from the package.
    assert r.static_file("static", "img/logo.svg") == PACKAGE_STATIC / "img" / "logo.svg"
    assert r.asset_url("static", "css/portico.css") != packaged.asset_url("static", "css/portico.css")


def test_custom_theme_name_falls_back_to_light_files(tmp_path: Path) -> None:
    custom = make_custom(tmp_path)
    (custom / "themes" / "corp").mkdir()
    (custom / "themes" / "corp" / "logo.png").write_bytes(b"\x89PNG")
    r = renderer(dir=str(custom), theme="corp")
    assert r.static_file("theme", "theme.css") == PACKAGE_STATIC / "themes" / "light" / "theme.css"
    assert r.static_file("theme", "logo.png") == (custom / "themes" / "corp" / "logo.png").resolve()


def test_relative_logo_url_like_dex(tmp_path: Path) -> None:
    # Dex's example config says logoURL: theme/logo.png; without such a file the packaged logo shows.
    assert renderer(logo_url="theme/logo.png").render("oob.html", code="c").count("img/logo.svg?v=") == 1
    custom = make_custom(tmp_path)
    (custom / "themes" / "dark" / "logo.png").write_bytes(b"\x89PNG")
    html = renderer(dir=str(custom), theme="dark", logo_url="theme/logo.png").render("oob.html", code="c")
    assert 'src="/dex/theme/logo.png?v=' in html


@pytest.mark.parametrize(
    "path",
    [
        "",
        "..",
        "../render.py",
        "css/../../render.py",
        "/etc/passwd",
        "css//portico.css",
        "./css/portico.css",
        "css\\..\\..\\render.py",
        "img/../../../render.py",
        ".hidden",
        "css/.secret",
        "nothere.css",
        "css",
        "css/portico.css\x00.png",
    ],
)
def test_static_file_refuses_traversal_and_missing(path: str) -> None:
    assert renderer().static_file("static", path) is None


def test_static_file_kinds() -> None:
    r = renderer()
    assert r.static_file("static", "css/portico.css") == PACKAGE_STATIC / "css" / "portico.css"
    assert r.static_file("templates", "login.html") is None
    assert r.static_file("theme", "../dark/theme.css") is None


def test_static_file_symlinks(tmp_path: Path) -> None:
    custom = make_custom(tmp_path)
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    (custom / "static" / "leak.txt").symlink_to(outside)
    (custom / "static" / "escape").symlink_to(tmp_path)
    (custom / "static" / "css" / "inside.css").write_text("a {}")
    (custom / "static" / "alias.css").symlink_to(custom / "static" / "css" / "inside.css")
    r = renderer(dir=str(custom))
    assert r.static_file("static", "leak.txt") is None
    assert r.static_file("static", "escape/secret.txt") is None
    assert r.static_file("static", "alias.css") == (custom / "static" / "css" / "inside.css").resolve()


def test_bad_frontend_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FrontendError, match=r"frontend\.dir"):
        renderer(dir=str(tmp_path / "missing"))
    with pytest.raises(FrontendError, match=r"frontend\.theme"):
        renderer(theme="../etc")
    custom = make_custom(tmp_path)
    (custom / "templates" / "login.html").write_text("{% if %}")
    with pytest.raises(FrontendError, match=r"login\.html:1"):
        renderer(dir=str(custom))


def test_long_client_name_renders_whole() -> None:
    html = render(renderer(), "login.html", client_name=LONG)
    assert LONG.strip() in html
