"""Open redirects and redirect-URI tricks: only exactly registered URIs (and, for public clients without
any, loopback URLs) ever receive the browser, at /auth, at /logout and through `next`-style parameters."""

from __future__ import annotations

from urllib.parse import urlsplit

from security_support import (
    APP_LOGOUT_REDIRECT,
    APP_REDIRECT,
    LOOPBACK_REDIRECT,
    PREFIX,
    client_auth,
    mock_code,
    query_of,
    redeem,
    tokens_for,
)
from web_harness import Harness

# Each differs from the registered https://app.example/callback in one way a lax matcher might forgive.
TRICKS = [
    "https://evil.example/callback",
    "https://app.example.evil.example/callback",
    "https://app.example/callbackx",  # prefix match
    "https://app.example/callback/extra",  # prefix match on a path boundary
    "https://app.example/callback?next=https://evil.example",  # extra query
    "https://app.example/callback#@evil.example",  # fragment
    "https://app.example/callback#",
    "https://app.example@evil.example/callback",  # userinfo: the host is evil.example
    "https://evil.example@app.example/callback",  # userinfo on the right host, still not the same string
    "https://app.example:443/callback",  # explicit default port
    "https://app.example:8443/callback",
    "HTTPS://APP.EXAMPLE/callback",  # case change in scheme and host
    "https://app.example/CALLBACK",  # case change in the path
    "https://app.example/callback/",  # trailing slash
    "https://app.example/callback/../x",  # path traversal away
    "https://app.example/x/../callback",  # path traversal back to the registered path
    "https://app.example/%63allback",  # percent-encoded letter
    "https://app.example%2Fcallback",
    "https://app.example/callback%00",
    "https://app.example/callback%2F..%2Fx",
    " https://app.example/callback",  # leading space
    "https://app.example/callback ",
    "https://app.example./callback",  # trailing dot in the host
    "http://app.example/callback",  # scheme downgrade
    "//app.example/callback",  # protocol-relative
    "//evil.example/",
    "/callback",
    "https:/app.example/callback",
    "https:\\\\evil.example\\callback",
    "javascript:alert(1)//https://app.example/callback",
    "data:text/html,<script>alert(1)</script>",
    "urn:ietf:wg:oauth:2.0:oob:auto",
    "http://localhost:8080/callback",  # loopback is for public clients without registered URIs only
    "http://127.0.0.1/callback",
    "",
]

LOOPBACK_OK = [
    "http://localhost/cb", "http://localhost:1/cb", "http://localhost:65535/a/b?c=d",
    "http://127.0.0.1:49152/cb", "http://127.0.0.2:8000/", "http://[::1]:8080/callback",
    "urn:ietf:wg:oauth:2.0:oob", "/device/callback",
]
LOOPBACK_TRICKS = [
    "https://localhost/cb",  # http only, as Dex
    "http://localhost.evil.example/cb",
    "http://127.0.0.1.evil.example/cb",
    "http://localhost@evil.example/cb",
    "http://evil.example#@localhost/cb",
    # Python reads the host as localhost, a browser (WHATWG: "\" is "/") as evil.example.
    "http://evil.example\\@localhost/cb",
    "http://evil.example\\.localhost/cb",
    "http://evil.example\t@localhost/cb",  # browsers drop tabs and newlines from URLs
    "http://evil.example\n@localhost/cb",
    "http://evil.example?@localhost/cb",
    "http://localhost:80@evil.example/cb",
    "http://localhost:99999/cb",  # port out of range
    "http://localhost:port/cb",
    "ftp://localhost/cb",
    "http://0.0.0.0/cb",
    "http://10.0.0.1/cb",
    "http://evil.example/cb",
    "javascript://localhost/%0aalert(1)",
    "//localhost/cb",
    "localhost/cb",
]


def _auth_query(client_id: str, redirect_uri: str, **extra: str) -> dict[str, str]:
    return {
        "client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code", "scope": "openid",
        "state": "st", **extra,
    }


async def _refusal_problem(h: Harness, path: str, query: dict[str, str]) -> str:
    """ "" when the request was refused with a page and no redirect; else what went wrong."""
    response = await h.client.get(f"{PREFIX}{path}", query_string=query)
    body = await h.text(response)
    if response.status_code != 400 or "Location" in response.headers:
        return (
            f"{path} redirect_uri={query.get('redirect_uri')!r}: {response.status_code} "
            f"Location={response.headers.get('Location')!r}"
        )
    if "evil.example" in body:
        return f"{path} redirect_uri={query.get('redirect_uri')!r}: the page names the URI"
    return ""


async def _all_refused(h: Harness, cases: list[tuple[str, dict[str, str]]]) -> None:
    problems = [problem for path, query in cases if (problem := await _refusal_problem(h, path, query))]
    assert not problems, "accepted:\n" + "\n".join(problems)


async def test_confidential_client_redirect_uri_must_match_exactly(sec: Harness) -> None:
    # /auth (picker), /auth/{connector} (stores the request) and an invalid scope, which would otherwise
    # be sent back to the redirect URI: none of them may send the browser to a trick URI.
    cases = [
        (path, _auth_query("app", uri, **extra))
        for uri in TRICKS
        for path, extra in (
            ("/auth", {}), ("/auth/mock", {}), ("/auth/local", {}),
            ("/auth", {"scope": "bogus", "connector_id": "mock"}),
        )
    ]
    await _all_refused(sec, cases)
    assert await sec.storage.auth_requests.list() == []


async def test_public_client_without_uris_may_use_loopback(sec: Harness) -> None:
    for uri in LOOPBACK_OK:
        response = await sec.client.get(f"{PREFIX}/auth/mock", query_string=_auth_query("native", uri))
        assert response.status_code == 302, (uri, await sec.text(response))


async def test_public_client_loopback_tricks_are_refused(sec: Harness) -> None:
    await _all_refused(sec, [("/auth/mock", _auth_query("native", uri)) for uri in LOOPBACK_TRICKS])
    # A confidential client gets no loopback freedom either (app registers oob and /device/callback).
    await _all_refused(
        sec,
        [
            ("/auth/mock", _auth_query(client, uri))
            for uri in LOOPBACK_OK
            if uri.startswith("http")
            for client in ("app", "other")
        ],
    )


async def test_public_client_with_registered_uris_gets_no_loopback_freedom(sec: Harness) -> None:
    await _all_refused(
        sec,
        [
            ("/auth/mock", _auth_query("native-reg", uri))
            for uri in (
                "http://localhost:7001/cb", "http://127.0.0.1:7000/other", "http://[::1]:7000/cb",
                "urn:ietf:wg:oauth:2.0:oob", "/device/callback",
            )
        ],
    )
    ok = await sec.client.get(
        f"{PREFIX}/auth/mock", query_string=_auth_query("native-reg", LOOPBACK_REDIRECT)
    )
    assert ok.status_code == 302


async def test_code_goes_to_the_loopback_port_asked_for(sec: Harness) -> None:
    code = await mock_code(sec, "native", "http://127.0.0.1:43123/cb", scope="openid")
    # The code is bound to that exact URI: another port cannot redeem it.
    wrong = await sec.client.post(
        f"{PREFIX}/token",
        form={
            "grant_type": "authorization_code", "code": code, "client_id": "native",
            "redirect_uri": "http://127.0.0.1:43124/cb",
        },
    )
    assert wrong.status_code == 400 and (await wrong.get_json())["error"] == "invalid_grant"


async def test_code_cannot_be_redeemed_with_another_redirect_uri(sec: Harness) -> None:
    code = await mock_code(sec)
    for uri in (
        "https://app.example/callbackx", "https://app.example/callback/", "HTTPS://APP.EXAMPLE/callback",
        "https://evil.example/callback", "",
    ):
        response = await redeem(sec, code, redirect_uri=uri)
        assert response.status_code == 400 and (await response.get_json())["error"] == "invalid_grant", uri
    assert (await redeem(sec, code)).status_code == 200  # the failures did not spend it


LOGOUT_TRICKS = [
    "https://evil.example/",
    APP_LOGOUT_REDIRECT + "x",
    APP_LOGOUT_REDIRECT + "/",
    APP_LOGOUT_REDIRECT.upper(),
    "https://app.example/bye?next=https://evil.example",
    "https://app.example@evil.example/bye",
    "https://app.example/bye#@evil.example",
    "https://xss.example/bye",  # registered, for another client
    APP_REDIRECT,  # a login redirect URI is not a logout one
    "//evil.example/bye",
    "http://localhost:8080/bye",
]


async def test_unregistered_post_logout_redirect_is_refused(sec: Harness) -> None:
    tokens = await tokens_for(sec)
    problems = []
    for target in LOGOUT_TRICKS:
        for params in (
            {"client_id": "app"}, {"id_token_hint": tokens["id_token"]},
            {"client_id": "app", "id_token_hint": tokens["id_token"]}, {},
        ):
            for method in ("GET", "POST"):
                query = {**params, "post_logout_redirect_uri": target, "state": "s"}
                response = await (
                    sec.client.get(f"{PREFIX}/logout", query_string=query)
                    if method == "GET"
                    else sec.client.post(f"{PREFIX}/logout", form=query)
                )
                if response.status_code != 400 or "Location" in response.headers:
                    problems.append(
                        f"{method} {query}: {response.status_code} {response.headers.get('Location')}"
                    )
    assert not problems, "\n".join(problems)


async def test_post_logout_redirect_needs_a_matching_client(sec: Harness) -> None:
    tokens = await tokens_for(sec)
    # The hint names app; a client_id of another client (whose URI is registered) does not combine with it.
    response = await sec.client.get(
        f"{PREFIX}/logout",
        query_string={
            "id_token_hint": tokens["id_token"], "client_id": "xss",
            "post_logout_redirect_uri": "https://xss.example/bye",
        },
    )
    assert response.status_code == 400 and "Location" not in response.headers
    good = await sec.client.post(
        f"{PREFIX}/logout",
        form={
            "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": APP_LOGOUT_REDIRECT,
            "state": "s&x=1",
        },
    )
    assert good.status_code == 303
    assert good.headers["Location"] == APP_LOGOUT_REDIRECT + "?state=s%26x%3D1"


NEXT_PARAMS = (
    "next", "return_to", "redirect", "redirect_url", "return", "url", "continue", "goto", "target",
    "RelayState", "post_login_redirect_uri",
)


async def test_next_style_parameters_never_redirect_off_site(sec: Harness) -> None:
    evil = "https://evil.example/steal"
    extra = {name: evil for name in NEXT_PARAMS}
    code = await mock_code(sec)  # leaves an SSO session in the test client: /auth answers at once
    requests = [
        ("GET", "/auth", {**_auth_query("app", APP_REDIRECT), **extra}),
        ("GET", "/auth/mock", {**_auth_query("app", APP_REDIRECT), **extra}),
        ("GET", "/auth/local/login", {"state": "nope", **extra}),
        ("GET", "/callback", {"state": "nope", **extra}),
        ("GET", "/approval", {"req": "nope", "hmac": "x", **extra}), ("GET", "/logout", extra),
        ("GET", "/device", extra), ("GET", "/device/callback", extra), ("GET", "/healthz", extra),
        ("GET", "/.well-known/openid-configuration", extra),
    ]
    for method, path, query in requests:
        response = await sec.client.open(f"{PREFIX}{path}", method=method, query_string=query)
        where = response.headers.get("Location", "")
        assert "evil.example" not in where, (path, where)
        assert urlsplit(where).hostname in (None, "app.example"), (path, where)
    # The token endpoint's answer never carries a redirect either.
    response = await sec.client.post(
        f"{PREFIX}/token", headers=client_auth("app"),
        form={"grant_type": "authorization_code", "code": code, "redirect_uri": APP_REDIRECT, **extra},
    )
    assert response.status_code == 200 and "Location" not in response.headers


async def test_error_redirects_keep_the_registered_uri_intact(sec: Harness) -> None:
    """An error sent back to the client goes to the registered URI, its own query kept, state echoed."""
    response = await sec.client.get(
        f"{PREFIX}/auth",
        query_string=_auth_query(
            "app", APP_REDIRECT, scope="openid bogus", state="a&redirect_uri=https://evil.example"
        ),
    )
    assert response.status_code == 303
    where = response.headers["Location"]
    assert where.startswith(APP_REDIRECT + "?")
    query = query_of(where)
    assert query["error"] == "invalid_scope"
    assert query["state"] == "a&redirect_uri=https://evil.example"
    assert "redirect_uri" not in query
