"""The `ldap` connector against a real OpenLDAP slapd: logins, groups, escaping, TLS, outages, refresh."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import ldap3
import pytest
from ldaputil import (
    EXAMPLE_LDIF,
    GROUPS_DN,
    PASSWORDS,
    PEOPLE_DN,
    SUFFIX,
    Slapd,
    TestCA,
    connector_config,
    slapd_fixture,
    start_slapd,
)

from appliance.connectors.base import ConnectorFactory, Identity, PasswordConnector, RefreshConnector, Scopes
from appliance.connectors.ldap import LDAPConnector, UserGone, open_ldap
from appliance.connectors.ldap_config import parse_config
from appliance.connectors.ldap_transport import as_text, filter_value
from appliance.errors import ConnectorError

GROUPS = Scopes(groups=True)
JANE_GROUPS = {"staff", "admins", "developers", "engineering", "loop-a", "loop-b"}
JANE_DN = f"uid=jane,{PEOPLE_DN}"
_serial = itertools.count()

Opener = Callable[..., LDAPConnector]


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    yield from slapd_fixture(tmp_path_factory.mktemp("slapd"), EXAMPLE_LDIF)


@pytest.fixture
async def opened() -> AsyncIterator[Opener]:
    """open(config, timeout=...) -> a connector that is closed when the test ends."""
    made: list[LDAPConnector] = []

    def open_(config: dict[str, Any], timeout: float = 10.0) -> LDAPConnector:
        connector = LDAPConnector("ldap", parse_config(config), timeout=timeout)
        made.append(connector)
        return connector

    yield open_
    for connector in made:
        await connector.close()


@pytest.fixture
def ldaps(slapd: Slapd, opened: Opener) -> LDAPConnector:
    return opened(connector_config(slapd))


def with_user_search(config: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**config, "userSearch": {**config["userSearch"], **changes}}


def add_person(slapd: Slapd, uid: str, *, rdn: str = "uid") -> str:
    """A throw-away user (password "temp-password") with a DN named by `rdn`; returns the DN."""
    dn = f"{rdn}={uid if rdn == 'uid' else 'Person ' + uid},{PEOPLE_DN}"
    slapd.add(dn, ["inetOrgPerson"], {
        "uid": uid, "cn": f"Person {uid}", "sn": "Person", # mail is ASCII only
        "mail": f"{uid.encode('ascii', 'ignore').decode()}@example.org",
        "userPassword": "temp-password",
    })
    return dn


def fresh_uid(prefix: str = "temp") -> str:
    return f"{prefix}{next(_serial)}-{time.monotonic_ns() % 100000}"


# -- logins ---------------------------------------------------------------------------------------


async def test_is_a_password_and_refresh_connector(slapd: Slapd) -> None:
    factory: ConnectorFactory = open_ldap  # what the registry is handed
    connector = factory("ldap", connector_config(slapd))
    assert isinstance(connector, LDAPConnector)
    try:
        assert isinstance(connector, PasswordConnector) and isinstance(connector, RefreshConnector)
        assert connector.prompt() == "Username"
        assert "service-password" not in repr(connector)
        prompted = open_ldap("x", {**connector_config(slapd), "usernamePrompt": "Staff ID"})
        assert prompted.prompt() == "Staff ID"
    finally:
        await connector.close()


async def test_login_returns_the_identity(ldaps: LDAPConnector) -> None:
    identity = await ldaps.login(Scopes(), "jane", PASSWORDS["jane"])
    assert identity is not None
    assert (identity.user_id, identity.username, identity.preferred_username) == ("jane", "Jane Doe", "jane")
    assert (identity.email, identity.email_verified) == ("jane@example.org", True)
    assert identity.groups == ()  # not asked for
    data = json.loads(identity.connector_data or b"")
    assert data == {"username": "jane", "entry": {"DN": JANE_DN}}


async def test_groups_of_both_styles_with_nested_groups_and_a_cycle(ldaps: LDAPConnector) -> None:
    jane = await ldaps.login(GROUPS, "jane", PASSWORDS["jane"])
    assert jane is not None and len(jane.groups) == len(set(jane.groups))
    assert set(jane.groups) == JANE_GROUPS  # loop-a and loop-b contain each other: the search ends
    john = await ldaps.login(GROUPS, "john", PASSWORDS["john"])
    assert john is not None and set(john.groups) == {"staff", "developers", "engineering"}


async def test_without_recursion_only_direct_groups(slapd: Slapd, opened: Opener) -> None:
    config = connector_config(slapd)
    config["groupSearch"]["userMatchers"][1].pop("recursionGroupAttr")
    jane = await opened(config).login(GROUPS, "jane", PASSWORDS["jane"])
    assert jane is not None and set(jane.groups) == {"staff", "admins", "developers", "loop-a"}


async def test_legacy_user_attr_and_group_attr(slapd: Slapd, opened: Opener) -> None:
    config = connector_config(slapd)
    config["groupSearch"] = {"baseDN": GROUPS_DN, "userAttr": "uid", "groupAttr": "memberUid",
                             "nameAttr": "cn"}
    john = await opened(config).login(GROUPS, "john", PASSWORDS["john"])
    assert john is not None and john.groups == ("staff",)


async def test_wrong_password_and_unknown_user_are_none(ldaps: LDAPConnector) -> None:
    assert await ldaps.login(Scopes(), "jane", "not-her-password") is None
    assert await ldaps.login(Scopes(), "jane", PASSWORDS["john"]) is None
    assert await ldaps.login(Scopes(), "nobody", PASSWORDS["jane"]) is None
    assert await ldaps.login(Scopes(), "", PASSWORDS["jane"]) is None


async def test_an_empty_password_never_reaches_the_directory(slapd: Slapd, ldaps: LDAPConnector) -> None:
    def binds_as_jane() -> int:
        return slapd.log_text().count(f'BIND dn="{JANE_DN}"')

    before = binds_as_jane()
    assert await ldaps.login(Scopes(), "jane", "wrong") is None
    after_wrong = binds_as_jane()
    assert after_wrong > before  # the control: a real attempt does show up in slapd's log
    assert await ldaps.login(Scopes(), "jane", "") is None
    assert binds_as_jane() == after_wrong


async def test_an_empty_password_is_refused_with_the_directory_down(opened: Opener, slapd: Slapd) -> None:
    config = {**connector_config(slapd, "plain"), "host": f"127.0.0.1:{closed_port()}"}
    connector = opened(config)
    assert await connector.login(Scopes(), "jane", "") is None  # nothing was sent anywhere
    with pytest.raises(ConnectorError, match="unreachable"):
        await connector.login(Scopes(), "jane", "x")


@pytest.mark.parametrize("username", [
    "*", "jan*", "j*e", "jane)(uid=*", "*)(|(uid=*", "jane)(|(uid=*)", "*)(objectClass=*", "\\2a", "jane\x00",
    "jane)(&", "(uid=jane)",
])
async def test_filter_injection_logs_in_nobody(ldaps: LDAPConnector, username: str) -> None:
    assert await ldaps.login(GROUPS, username, PASSWORDS["jane"]) is None


async def test_a_username_full_of_filter_characters_logs_in(ldaps: LDAPConnector) -> None:
    identity = await ldaps.login(GROUPS, "o'brien(test)*", PASSWORDS["o'brien(test)*"])
    assert identity is not None
    assert (identity.user_id, identity.username) == ("o'brien(test)*", "Seán O'Brien")
    # Found by memberUid=<uid> and by member=<DN>, both escaped; an unescaped * would match everyone.
    assert set(identity.groups) == {"staff", "writers"}


async def test_user_filter_and_scope_narrow_the_search(slapd: Slapd, opened: Opener) -> None:
    config = connector_config(slapd)
    posix_only = opened(with_user_search(config, filter="(objectClass=posixAccount)"))
    assert await posix_only.login(Scopes(), "jane", PASSWORDS["jane"]) is None
    one_level_too_high = opened(with_user_search(config, baseDN=SUFFIX, scope="one"))
    assert await one_level_too_high.login(Scopes(), "jane", PASSWORDS["jane"]) is None
    subtree = opened(with_user_search(config, baseDN=SUFFIX, scope="sub"))
    assert await subtree.login(Scopes(), "jane", PASSWORDS["jane"]) is not None


async def test_several_username_attributes_are_or_ed(slapd: Slapd, opened: Opener) -> None:
    connector = opened(with_user_search(connector_config(slapd), username=["uid", "mail"]))
    by_mail = await connector.login(Scopes(), "jane@example.org", PASSWORDS["jane"])
    by_uid = await connector.login(Scopes(), "jane", PASSWORDS["jane"])
    assert by_mail is not None and by_uid is not None and by_mail.user_id == by_uid.user_id == "jane"
    with pytest.raises(ConnectorError, match="several entries"):
        await connector.login(Scopes(), "shared@example.org", PASSWORDS["dup1"])


async def test_a_missing_attribute_is_an_error_after_the_password_check(ldaps: LDAPConnector) -> None:
    assert await ldaps.login(Scopes(), "nomail", "wrong") is None
    with pytest.raises(ConnectorError, match=r"emailAttr \(mail\)"):
        await ldaps.login(Scopes(), "nomail", PASSWORDS["nomail"])


async def test_email_suffix_and_dn_as_id(slapd: Slapd, opened: Opener) -> None:
    config = with_user_search(connector_config(slapd), idAttr="DN", nameAttr="uid",
                              emailSuffix="corp.example", emailAttr="")
    identity = await opened(config).login(Scopes(), "nomail", PASSWORDS["nomail"])
    assert identity is not None
    assert identity.user_id == f"uid=nomail,{PEOPLE_DN}"
    assert identity.email == "nomail@corp.example"  # Dex appends the suffix to the nameAttr value


async def test_service_account_and_anonymous_search(
    slapd: Slapd, opened: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = opened({**connector_config(slapd), "bindPW": "not-the-service-password"})
    with pytest.raises(ConnectorError, match="service bind") as caught:
        await wrong.login(Scopes(), "jane", PASSWORDS["jane"])
    assert "service bind" in caplog.text  # logged for the operator
    for secret in ("not-the-service-password", PASSWORDS["jane"]):
        assert secret not in str(caught.value) and secret not in caplog.text
    anonymous = {k: v for k, v in connector_config(slapd).items() if k not in ("bindDN", "bindPW")}
    assert await opened(anonymous).login(Scopes(), "jane", PASSWORDS["jane"]) is not None


async def test_test_connection(slapd: Slapd, ldaps: LDAPConnector, opened: Opener) -> None:
    summary = await ldaps.test_connection()
    assert "bound as" in summary and PEOPLE_DN in summary and GROUPS_DN in summary
    missing = opened(with_user_search(connector_config(slapd), baseDN=f"ou=nobody,{SUFFIX}"))
    with pytest.raises(ConnectorError, match="does not exist"):
        await missing.test_connection()
    with pytest.raises(ConnectorError, match="does not exist"):
        await missing.login(Scopes(), "jane", PASSWORDS["jane"])


async def test_concurrent_logins_share_the_pool(ldaps: LDAPConnector) -> None:
    users = ["jane", "john", "o'brien(test)*"] * 4
    results = await asyncio.gather(*(ldaps.login(GROUPS, user, PASSWORDS[user]) for user in users))
    assert [r.user_id if r else None for r in results] == users


# -- transport and TLS ----------------------------------------------------------------------------


async def login_jane(connector: LDAPConnector) -> Identity | None:
    return await connector.login(Scopes(), "jane", PASSWORDS["jane"])


async def test_ldaps_with_root_ca_data(slapd: Slapd, opened: Opener) -> None:
    config = connector_config(slapd)
    config.pop("rootCA")
    config["rootCAData"] = base64.b64encode(slapd.ca.pem).decode()
    assert await login_jane(opened(config)) is not None


async def test_ldaps_with_the_wrong_ca_fails(slapd: Slapd, opened: Opener, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    other.write_bytes(TestCA.create("Someone Else").pem)
    with pytest.raises(ConnectorError, match=r"(?i)TLS.*certificate verify failed"):
        await login_jane(opened({**connector_config(slapd), "rootCA": str(other)}))
    system_store = {k: v for k, v in connector_config(slapd).items() if k != "rootCA"}
    with pytest.raises(ConnectorError, match="certificate verify failed"):
        await login_jane(opened(system_store))
    skip_verify = {**system_store, "insecureSkipVerify": True}
    assert await login_jane(opened(skip_verify)) is not None


async def test_ldaps_checks_the_server_name(tmp_path_factory: pytest.TempPathFactory, opened: Opener) -> None:
    workdir = tmp_path_factory.mktemp("misnamed")
    server = start_slapd(workdir, EXAMPLE_LDIF, cert_hosts=("ldap.example.invalid",))
    try:
        with pytest.raises(ConnectorError, match="mismatch"):
            await login_jane(opened(connector_config(server)))
        assert await login_jane(opened({**connector_config(server), "insecureSkipVerify": True})) is not None
    finally:
        server.stop()


async def test_start_tls(slapd: Slapd, opened: Opener, tmp_path: Path) -> None:
    assert await login_jane(opened(connector_config(slapd, "starttls"))) is not None
    other = tmp_path / "other-ca.pem"
    other.write_bytes(TestCA.create("Someone Else").pem)
    with pytest.raises(ConnectorError, match="TLS"):
        await login_jane(opened({**connector_config(slapd, "starttls"), "rootCA": str(other)}))


async def test_plain_ldap_only_with_insecure_no_ssl(slapd: Slapd, opened: Opener) -> None:
    assert await login_jane(opened(connector_config(slapd, "plain"))) is not None
    ldaps_on_the_plain_port = {**connector_config(slapd), "host": slapd.plain_host}
    with pytest.raises(ConnectorError, match="TLS"):
        await login_jane(opened(ldaps_on_the_plain_port))


async def test_client_certificate(slapd: Slapd, opened: Opener, tmp_path: Path) -> None:
    def write_pair(ca: TestCA, name: str) -> dict[str, str]:
        cert, key = ca.issue("portico", client=True)
        (tmp_path / f"{name}.pem").write_bytes(cert)
        (tmp_path / f"{name}.key").write_bytes(key)
        return {"clientCert": str(tmp_path / f"{name}.pem"), "clientKey": str(tmp_path / f"{name}.key")}

    good = {**connector_config(slapd), **write_pair(slapd.ca, "good")}
    assert await login_jane(opened(good)) is not None
    # slapd checks any certificate a client sends (TLSVerifyClient try): one from a stranger's CA fails.
    stranger = {**connector_config(slapd), **write_pair(TestCA.create("Stranger"), "stranger")}
    with pytest.raises(ConnectorError, match=r"TLS|connection"):
        await login_jane(opened(stranger))
    mismatched = {**good, "clientKey": stranger["clientKey"]}
    with pytest.raises(ConnectorError, match="TLS setup"):
        await login_jane(opened(mismatched))


async def test_server_down_restarted_down(
    tmp_path_factory: pytest.TempPathFactory, opened: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_slapd(tmp_path_factory.mktemp("outage"), EXAMPLE_LDIF)
    try:
        connector = opened(connector_config(server))
        assert await login_jane(connector) is not None
        server.restart()  # the pooled service connection now leads nowhere: it is replaced
        jane = await connector.login(GROUPS, "jane", PASSWORDS["jane"])
        assert jane is not None and set(jane.groups) == JANE_GROUPS
        server.stop()
        with pytest.raises(ConnectorError, match=r"LDAP server unreachable at ldaps://127\.0\.0\.1"):
            await login_jane(connector)
        assert "LDAP server unreachable" in caplog.text
        with pytest.raises(ConnectorError, match="unreachable"):
            await connector.refresh(Scopes(), jane)
        with pytest.raises(ConnectorError, match="unreachable"):
            await connector.test_connection()
    finally:
        server.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_silent_server_times_out_without_blocking_the_loop(slapd: Slapd, opened: Opener) -> None:
    # A socket that listens and never answers: connect succeeds (the kernel's backlog), reads wait.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        config = {**connector_config(slapd, "plain"), "host": f"127.0.0.1:{silent.getsockname()[1]}"}
        connector = opened(config, timeout=1.0)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        started = time.monotonic()
        try:
            with pytest.raises(ConnectorError, match="did not answer in time"):
                await login_jane(connector)
        finally:
            task.cancel()
        elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 5.0
    assert ticks >= 40  # about 100 if the loop ran freely during the wait


async def test_the_loop_keeps_running_during_a_login(ldaps: LDAPConnector) -> None:
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        assert await ldaps.login(GROUPS, "jane", PASSWORDS["jane"]) is not None
    finally:
        task.cancel()
    # TLS handshakes and several searches took tens of ms; the loop went round many times meanwhile.
    assert len(ticks) > 20
    assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.05


# -- refresh --------------------------------------------------------------------------------------


async def test_refresh_keeps_the_user(ldaps: LDAPConnector) -> None:
    jane = await ldaps.login(Scopes(offline_access=True), "jane", PASSWORDS["jane"])
    assert jane is not None
    fresh = await ldaps.refresh(GROUPS, jane)
    assert (fresh.user_id, fresh.email) == ("jane", "jane@example.org")
    assert fresh.connector_data == jane.connector_data
    assert set(fresh.groups) == JANE_GROUPS
    assert (await ldaps.refresh(Scopes(), jane)).groups == ()


async def test_refresh_after_the_user_is_deleted(slapd: Slapd, ldaps: LDAPConnector) -> None:
    uid = fresh_uid()
    dn = add_person(slapd, uid)
    identity = await ldaps.login(Scopes(), uid, "temp-password")
    assert identity is not None
    slapd.delete(dn)
    with pytest.raises(UserGone, match="no longer in the directory"):
        await ldaps.refresh(Scopes(), identity)
    assert await ldaps.login(Scopes(), uid, "temp-password") is None


async def test_refresh_when_the_username_names_another_entry(slapd: Slapd, ldaps: LDAPConnector) -> None:
    uid = fresh_uid()
    dn = add_person(slapd, uid)
    identity = await ldaps.login(Scopes(), uid, "temp-password")
    assert identity is not None
    slapd.delete(dn)
    other = add_person(slapd, uid, rdn="cn")  # same uid, another entry
    try:
        with pytest.raises(UserGone, match="now names"):
            await ldaps.refresh(Scopes(), identity)
    finally:
        slapd.delete(other)


async def test_refresh_reads_groups_again(slapd: Slapd, ldaps: LDAPConnector) -> None:
    uid = fresh_uid()
    dn = add_person(slapd, uid)
    group = f"cn=team-{uid},{GROUPS_DN}"
    slapd.add(group, ["groupOfNames"], {"cn": f"team-{uid}", "member": [JANE_DN]})
    try:
        identity = await ldaps.login(GROUPS, uid, "temp-password")
        assert identity is not None and identity.groups == ()
        slapd.modify(group, {"member": [(ldap3.MODIFY_ADD, [dn])]})
        assert (await ldaps.refresh(GROUPS, identity)).groups == (f"team-{uid}",)
        slapd.modify(group, {"member": [(ldap3.MODIFY_DELETE, [dn])]})
        assert (await ldaps.refresh(GROUPS, identity)).groups == ()
    finally:
        slapd.delete(group)
        slapd.delete(dn)


async def test_refresh_reads_dex_refresh_data(slapd: Slapd, ldaps: LDAPConnector) -> None:
    # Dex stores {"username": <filter-escaped>, "entry": <the whole entry>}; Go escapes non-ASCII bytes too.
    uid = fresh_uid("zoë")
    dn = add_person(slapd, uid)
    try:
        go_escaped = "".join(f"\\{b:02x}" if b > 0x7F else chr(b) for b in uid.encode())
        data = {"username": go_escaped, "entry": {"DN": dn, "Attributes": [{"Name": "uid", "Values": [uid]}]}}
        fresh = await ldaps.refresh(Scopes(), Identity(user_id=uid, connector_data=json.dumps(data).encode()))
        assert fresh.user_id == uid
        obrien = {"username": "o'brien\\28test\\29\\2a", "entry": {"DN": f"uid=o'brien(test)*,{PEOPLE_DN}"}}
        fresh = await ldaps.refresh(GROUPS, Identity(user_id="x", connector_data=json.dumps(obrien).encode()))
        assert fresh.user_id == "o'brien(test)*" and set(fresh.groups) == {"staff", "writers"}
    finally:
        slapd.delete(dn)


@pytest.mark.parametrize("data", [None, b"", b"not json", b"{}", b'{"username": "jane"}', b'{"username": 1}'])
async def test_refresh_with_unreadable_data(ldaps: LDAPConnector, data: bytes | None) -> None:
    with pytest.raises(UserGone, match="unreadable"):
        await ldaps.refresh(Scopes(), Identity(user_id="jane", connector_data=data))


# -- config (no server needed) --------------------------------------------------------------------

MINIMAL: dict[str, Any] = {
    "host": "ldap.example.com",
    "userSearch": {"baseDN": PEOPLE_DN, "username": "uid", "idAttr": "uid", "emailAttr": "mail"},
}


def problems_of(config: dict[str, Any]) -> str:
    with pytest.raises(ValueError) as caught:
        open_ldap("ldap", config)
    return str(caught.value)


@pytest.mark.parametrize(("changes", "url"), [
    ({}, "ldaps://ldap.example.com:636"),
    ({"insecureNoSSL": True}, "ldap://ldap.example.com:389"),
    ({"startTLS": True}, "ldap://ldap.example.com:389 (StartTLS)"),
    ({"insecureNoSSL": True, "startTLS": True}, "ldap://ldap.example.com:389"),  # as Dex: no SSL wins
    ({"host": "ldap.example.com:1636"}, "ldaps://ldap.example.com:1636"),
    ({"host": "[2001:db8::1]:1389", "insecureNoSSL": True}, "ldap://[2001:db8::1]:1389"),
    ({"host": "2001:db8::1"}, "ldaps://[2001:db8::1]:636"),
])
def test_host_port_and_transport(changes: dict[str, Any], url: str) -> None:
    assert parse_config({**MINIMAL, **changes}).url == url


def test_keys_match_case_insensitively_and_defaults() -> None:
    cfg = parse_config({
        "HOST": "h",
        "UserSearch": {"BASEDN": "o=x", "Username": ["uid", "mail"]},
        "groupsearch": {"BaseDN": "o=g", "USERMATCHERS": [{"UserAttr": "DN", "groupattr": "member"}]},
    })
    assert (cfg.host, cfg.user_base_dn, cfg.username_attrs) == ("h", "o=x", ("uid", "mail"))
    assert (cfg.user_scope, cfg.username_prompt, cfg.group_base_dn) == ("SUBTREE", "Username", "o=g")
    assert [(m.user_attr, m.group_attr) for m in cfg.user_matchers] == [("DN", "member")]


def test_user_matchers_win_over_the_legacy_pair() -> None:
    group = {"baseDN": "o=g", "userAttr": "uid", "groupAttr": "memberUid",
             "userMatchers": [{"userAttr": "DN", "groupAttr": "member", "recursionGroupAttr": "member"}]}
    cfg = parse_config({**MINIMAL, "groupSearch": group})
    assert [(m.user_attr, m.recursion_group_attr) for m in cfg.user_matchers] == [("DN", "member")]
    cfg = parse_config({**MINIMAL, "groupSearch": {**group, "userMatchers": []}})
    assert [(m.user_attr, m.group_attr) for m in cfg.user_matchers] == [("uid", "memberUid")]


def test_every_problem_is_reported_at_once() -> None:
    text = problems_of({"insecureNoSSL": "yes", "hots": "x", "port": 389, "userSearch": {"scope": "base"}})
    for expected in ("host is required", "userSearch.baseDN is required", "userSearch.username is required",
                     "insecureNoSSL must be true or false", 'unknown key hots (did you mean "host"?)',
                     "the port belongs in host", 'userSearch.scope must be "sub" or "one"'):
        assert expected in text


@pytest.mark.parametrize(("changes", "expected"), [
    ({"host": "ldaps://ldap.example.com"}, "not a URL"),
    ({"host": "h:99999"}, "bad port"),
    ({"bindDN": "cn=x"}, "bindPW is empty but bindDN is set"),
    ({"bindPW": "secret"}, "bindPW is set but bindDN is empty"),
    ({"rootCAData": "%%%"}, "rootCAData must be base64"),
    ({"rootCAData": base64.b64encode(b"not a certificate").decode()}, "no PEM certificates"),
    ({"rootCA": "/nonexistent/ca.pem"}, "rootCA: cannot read"),
    ({"clientCert": "/nonexistent/c.pem", "clientKey": "/nonexistent/c.key"}, "clientCert: no such file"),
    ({"userSearch": {**MINIMAL["userSearch"], "filter": "objectClass=person"}}, "must be in parentheses"),
    ({"userSearch": {**MINIMAL["userSearch"], "filter": "(&(objectClass=person)"}}, "not a valid LDAP"),
    ({"userSearch": {**MINIMAL["userSearch"], "username": ["uid", 3]}}, "userSearch.username must be"),
    ({"groupSearch": {"baseDN": "o=g", "userMatchers": [{"userAttr": "uid", "grupAttr": "x"}]}},
     'unknown key groupSearch.userMatchers[0].grupAttr (did you mean "groupAttr"?)'),
    ({"groupSearch": "o=g"}, "groupSearch must be a mapping"),
])
def test_bad_configs_name_the_key(changes: dict[str, Any], expected: str) -> None:
    text = problems_of({**MINIMAL, **changes})
    assert expected in text
    assert "secret" not in text


def test_rootca_data_and_kerberos(slapd_ca_pem: bytes) -> None:
    cfg = parse_config({**MINIMAL, "rootCAData": base64.b64encode(slapd_ca_pem).decode(), "kerberos": {}})
    assert cfg.root_ca_pem == slapd_ca_pem  # and kerberos is only a warning


@pytest.fixture(scope="module")
def slapd_ca_pem() -> bytes:
    return TestCA.create().pem


def test_binary_values_become_text() -> None:
    # The objectGUID and objectSid of Active Directory, in the forms its own tools print.
    guid = base64.b64decode("Hrz/HqNKnU+lCNTYHx9Ycw==")
    assert as_text("objectGUID", guid) == "1effbc1e-4aa3-4f9d-a508-d4d81f1f5873"
    sid = bytes([1, 2, 0, 0, 0, 0, 0, 5]) + (21).to_bytes(4, "little") + (1234).to_bytes(4, "little")
    assert as_text("objectSid", sid) == "S-1-5-21-1234"
    assert as_text("uid", "zoë".encode()) == "zoë"
    assert as_text("photo", b"\xff\x00\xfe") == "/wD+"  # any other binary value: base64
    assert filter_value(b"\xff(") == "\\ff\\28" and filter_value(b"a*(b)") == "a\\2a\\28b\\29"
