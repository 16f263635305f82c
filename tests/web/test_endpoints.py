"""The machine-facing endpoints, the connector picker, headers and CORS."""

from __future__ import annotations

import json
from datetime import timedelta

from web_harness import (
    BASE_CONFIG,
    Harness,
    HarnessFactory,
    location,
    make_config,
    path_and_query,
    query_of,
)

from appliance.connectors.registry import default_registry
from appliance.oidc.deps import build_snapshot


async def test_discovery_document(web: Harness) -> None:
    response = await web.client.get("/dex/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    doc = await response.get_json()
    assert list(doc)[:7] == ["issuer", "authorization_endpoint", "token_endpoint", "jwks_uri",
                             "userinfo_endpoint", "device_authorization_endpoint", "introspection_endpoint"]
    assert doc["issuer"] == "http://127.0.0.1:5556/dex"
    assert doc["token_endpoint"] == "http://127.0.0.1:5556/dex/token"
    assert doc["jwks_uri"] == "http://127.0.0.1:5556/dex/keys"
    assert doc["response_types_supported"] == ["code"]
    assert doc["subject_types_supported"] == ["public"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["code_challenge_methods_supported"] == ["S256", "plain"]
    assert doc["scopes_supported"] == ["openid", "email", "groups", "profile", "offline_access"]
    assert doc["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post"]
    assert "authorization_code" in doc["grant_types_supported"]
    assert doc["grant_types_supported"] == sorted(doc["grant_types_supported"])


async def test_keys_are_the_jwks_with_cache_headers(web: Harness) -> None:
    response = await web.client.get("/dex/keys")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "max-age=600, must-revalidate"
    jwks = await response.get_json()
    assert jwks == web.deps.keys.jwks()
    assert all("d" not in key for key in jwks["keys"])  # never the private part


async def test_healthz(web: Harness) -> None:
    response = await web.client.get("/dex/healthz")
    assert response.status_code == 200
    assert await web.text(response) == "Health check passed"
    await web.storage.close()  # the database goes away
    failed = await web.client.get("/dex/healthz")
    assert failed.status_code == 500


async def test_userinfo_rejects_bad_tokens(web: Harness) -> None:
    missing = await web.client.get("/dex/userinfo")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    bad = await web.client.get("/dex/userinfo", headers={"Authorization": "Bearer not.a.token"})
    assert bad.status_code == 401
    assert bad.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert (await bad.get_json())["error"] == "invalid_token"


async def test_userinfo_rejects_an_expired_token(web: Harness) -> None:
    code = await web.code_via_local()
    body = await (await web.redeem(code)).get_json()
    web.clock.advance(timedelta(hours=25))
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    response = await web.client.post("/dex/userinfo", headers=bearer)
    assert response.status_code == 401


async def test_pages_carry_security_headers(web: Harness) -> None:
    response = await web.start("local", client_id="nobody")
    headers = response.headers
    assert headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"


async def test_configured_headers_and_cors(make_harness: HarnessFactory) -> None:
    text = BASE_CONFIG.replace("{skip}", "true").replace(
        "  http: 127.0.0.1:5556\n",
        "  http: 127.0.0.1:5556\n  allowedOrigins: ['https://spa.example']\n"
        "  headers:\n    Strict-Transport-Security: max-age=31536000\n")
    web = await make_harness(text)
    response = await web.client.get("/dex/.well-known/openid-configuration",
                                    headers={"Origin": "https://spa.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://spa.example"
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    other = await web.client.get("/dex/keys", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = await web.client.options("/dex/token", headers={
        "Origin": "https://spa.example", "Access-Control-Request-Method": "POST"})
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://spa.example"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    # Pages are not CORS resources.
    page = await web.start("local", client_id="nobody")
    assert "Access-Control-Allow-Origin" not in page.headers


async def test_picker_lists_connectors_with_their_urls(web: Harness) -> None:
    response = await web.start()
    assert response.status_code == 200
    page = await web.text(response)
    for name in ("Mock", "Mock Password", "Email"):
        assert f"Log in with {name}" in page
    assert "/dex/auth/mockpw?" in page and "/dex/auth/local?" in page
    assert "Web &lt;App&gt;" in page


async def test_single_connector_redirects_unless_always_shown(make_harness: HarnessFactory) -> None:
    one = BASE_CONFIG.split("connectors:")[0].replace("{skip}", "true")
    web = await make_harness(one)
    response = await web.start()
    assert response.status_code == 302 and location(response).startswith("/dex/auth/local?")
    shown = await make_harness(one.replace("  skipApprovalScreen: true\n",
                                           "  skipApprovalScreen: true\n  alwaysShowLoginScreen: true\n"))
    page = await shown.start()
    assert page.status_code == 200 and "Log in with Email" in await shown.text(page)


async def test_allowed_connectors_filter_the_picker(make_harness: HarnessFactory) -> None:
    text = BASE_CONFIG.replace("{skip}", "true").replace(
        "    name: Native\n", "    name: Native\n    allowedConnectors: [mock]\n")
    web = await make_harness(text)
    response = await web.start(client_id="native", redirect_uri="http://127.0.0.1:9000/cb")
    assert response.status_code == 302 and location(response).startswith("/dex/auth/mock?")
    refused = await web.client.get("/dex/auth/local", query_string={
        "client_id": "native", "redirect_uri": "http://127.0.0.1:9000/cb", "response_type": "code",
        "scope": "openid"})
    assert refused.status_code == 403


async def test_static_assets_and_404_page(web: Harness) -> None:
    css = await web.client.get("/dex/static/css/portico.css")
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    theme = await web.client.get("/dex/theme/theme.css")
    assert theme.status_code == 200
    traversal = await web.client.get("/dex/static/../render.py")
    assert traversal.status_code == 404
    missing = await web.client.get("/dex/nothing-here")
    assert missing.status_code == 404 and "text/html" in missing.headers["Content-Type"]


async def test_json_endpoints_answer_errors_in_json(web: Harness) -> None:
    response = await web.client.get("/dex/token")
    assert response.status_code == 405
    assert json.loads(await web.text(response))["error"] == "invalid_request"


async def test_cross_client_audience(web: Harness) -> None:
    code = await web.code_via_local(scope="openid audience:server:client_id:peer")
    body = await (await web.redeem(code)).get_json()
    claims = web.deps.keys.verify(body["id_token"], now=web.clock.now())
    assert claims["aud"] == ["peer", "web-app"] and claims["azp"] == "web-app"
    # native is not trusted by peer.
    refused = await web.start("local", client_id="native", redirect_uri="http://127.0.0.1:9000/cb",
                              scope="openid audience:server:client_id:peer")
    assert query_of(location(refused))["error"] == "invalid_scope"


async def test_password_page_has_a_way_back_to_the_picker(web: Harness) -> None:
    start = await web.start("local")
    login_url = location(await web.client.get(path_and_query(location(start))))
    page = await web.text(await web.client.get(path_and_query(login_url)))
    assert "Choose another login method" in page


async def test_a_swapped_snapshot_serves_the_next_request(web: Harness) -> None:
    before = await web.start()
    assert before.status_code == 200  # three connectors: the picker
    only_local = make_config(BASE_CONFIG.split("connectors:")[0].replace("{skip}", "true"))
    web.deps.swap(await build_snapshot(only_local, default_registry(), storage=web.storage))
    after = await web.start()
    assert after.status_code == 302 and location(after).startswith("/dex/auth/local?")
    gone = await web.start("mock")
    assert query_of(location(gone))["error"] == "invalid_request"
