"""LDAP logins (a real slapd) are throttled: after the limit the directory is not even asked (no BIND
for the user in slapd's log), the right password is refused like a wrong one, and a clear lifts it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from adminutil import Server, start_server, wait_for
from bf_support import Browser, password_grant, server_config
from ldaputil import EXAMPLE_LDIF, PASSWORDS, PEOPLE_DN, Slapd, connector_config, slapd_fixture

pytestmark = pytest.mark.timeout(180)

JANE_BIND = f'BIND dn="uid=jane,{PEOPLE_DN}" method='  # one line per bind request


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    yield from slapd_fixture(tmp_path_factory.mktemp("slapd"), EXAMPLE_LDIF)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, slapd: Slapd) -> Iterator[Server]:
    def config(port: int) -> dict[str, object]:
        made = server_config(port, connectors=[{"type": "ldap", "id": "ldap", "name": "LDAP",
                                                "config": connector_config(slapd, "plain")}])
        made["oauth2"]["passwordConnector"] = "ldap"
        return made

    running = start_server(tmp_path_factory.mktemp("ldap-server"), config)
    yield running
    running.stop()


def binds(slapd: Slapd) -> int:
    return slapd.log_text().count(JANE_BIND)


def test_ldap_password_grant_and_form_are_throttled(server: Server, slapd: Slapd) -> None:
    assert password_grant(server.issuer, "jane", PASSWORDS["jane"]).status_code == 200
    browser = Browser(server.issuer, connector="ldap")
    try:
        assert browser.post("jane", "wrong-1").status_code == 200  # the form again
        assert password_grant(server.issuer, "JANE", "wrong-2").status_code == 401
        assert browser.post("jane", "wrong-3").status_code == 200  # the third: locked now
        asked = 4  # one success, three wrong passwords
        wait_for(lambda: binds(slapd) == asked, what="slapd's log of the four binds")
        assert password_grant(server.issuer, "jane", PASSWORDS["jane"]).status_code == 401
        page = browser.post("jane", PASSWORDS["jane"])
        assert page.status_code == 200 and "Incorrect username or password" in page.text
    finally:
        browser.close()
    assert binds(slapd) == asked  # locked: the directory was not asked to check the password
    listed = {r["id"]: r for r in server.admin().get("/v1/lockouts")}
    assert listed["account:ldap:jane"]["connector_id"] == "ldap"
    server.admin().post("/v1/lockouts/clear", {"user": "jane", "connector": "ldap"})
    assert password_grant(server.issuer, "jane", PASSWORDS["jane"]).status_code == 200
    assert wait_for(lambda: binds(slapd) > asked, what="a new bind after the clear")
