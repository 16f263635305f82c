"""The saml connector against a real SAML IdP (npm saml-idp): the login, and every forged answer refused."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from samlutil import (
    NS,
    IdpAnswer,
    KeyPair,
    SamlIdp,
    assertion_of,
    child,
    encode,
    evil_assertion,
    parse,
    run_saml_idp,
    sign,
    sign_in_place,
    signing_cert,
    strip_signatures,
)

from appliance.clock import FrozenClock
from appliance.connectors.base import (
    Identity,
    RefreshConnector,
    SAMLConnector,
    Scopes,
    UserNotInRequiredGroupsError,
)
from appliance.connectors.saml import MemoryReplayCache, SAMLError, SAMLProvider, open_saml
from appliance.connectors.saml_verify import _signed_copy
from appliance.errors import ConnectorError

ACS = "https://portico.test/dex/callback"
IDP_ISSUER = "urn:portico-test:idp"
GROUPS = Scopes(groups=True)
SAML_P = "{urn:oasis:names:tc:SAML:2.0:protocol}"
SAML_A = "{urn:oasis:names:tc:SAML:2.0:assertion}"


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SamlIdp]:
    workdir = tmp_path_factory.mktemp("saml-idp")
    with run_saml_idp(workdir, acs_url=ACS, audience=ACS, issuer=IDP_ISSUER) as running:
        yield running


@pytest.fixture(scope="module")
def attacker() -> KeyPair:
    return KeyPair.generate("attacker")


def config(idp: SamlIdp, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ssoURL": idp.sso_url,
        "caData": base64.b64encode(idp.keys.cert_pem).decode(),
        "redirectURI": ACS,
        "ssoIssuer": IDP_ISSUER,
        "usernameAttr": "uid",
        "emailAttr": "email",
        "groupsAttr": "groups",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def connector(idp: SamlIdp, clock: FrozenClock | None = None, **overrides: Any) -> SAMLProvider:
    return open_saml("saml", config(idp, **overrides), clock=clock)


async def alogin(
    idp: SamlIdp, conn: SAMLProvider, request_id: str, sign_response: bool = True, **user: str
) -> IdpAnswer:
    """The connector's AuthnRequest through the IdP's own pages; the answer it would post to the ACS."""
    post = await conn.post_data(GROUPS, request_id)
    answer = await asyncio.to_thread(
        idp.login, post.action, post.saml_request, post.relay_state, sign_response=sign_response, **user
    )
    assert answer.acs_url == ACS and answer.relay_state == request_id
    return answer


def login(idp: SamlIdp, conn: SAMLProvider, request_id: str, sign_response: bool = True) -> IdpAnswer:
    """alogin for the module fixtures, which run outside any event loop."""
    return asyncio.run(alogin(idp, conn, request_id, sign_response))


@pytest.fixture(scope="module")
def signed_both(idp: SamlIdp) -> IdpAnswer:
    """Response and Assertion signed by the IdP, for request `req-both`."""
    return login(idp, connector(idp), "req-both")


@pytest.fixture(scope="module")
def signed_assertion(idp: SamlIdp) -> IdpAnswer:
    """Only the Assertion signed by the IdP, for request `req-assertion`."""
    return login(idp, connector(idp), "req-assertion", sign_response=False)


async def refused(conn: SAMLProvider, response: str, request_id: str, reason: str) -> SAMLError:
    with pytest.raises(SAMLError) as caught:
        await conn.handle_post(GROUPS, response, request_id)
    assert caught.value.reason == reason, caught.value
    return caught.value


def not_on_or_after(answer: IdpAnswer) -> datetime:
    value = child(assertion_of(parse(answer.xml())), "saml:Conditions").get("NotOnOrAfter", "")
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- the request and the good answers ----------------------------------------------------------


async def test_authn_request_has_what_the_idp_needs(idp: SamlIdp) -> None:
    clock = FrozenClock(datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC))
    conn = connector(idp, clock, entityIssuer="https://portico.test/sp", nameIDPolicyFormat="emailAddress")
    assert isinstance(conn, SAMLConnector) and isinstance(conn, RefreshConnector)
    post = await conn.post_data(Scopes(), "areq1")
    assert (post.action, post.relay_state) == (idp.sso_url, "areq1")
    request = parse(base64.b64decode(post.saml_request))
    assert request.tag == f"{SAML_P}AuthnRequest"
    assert dict(request.attrib) == {
        "ID": "areq1",
        "Version": "2.0",
        "IssueInstant": "2026-03-04T05:06:07Z",
        "Destination": idp.sso_url,
        "ProtocolBinding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
        "AssertionConsumerServiceURL": ACS,
    }
    assert request.findtext("saml:Issuer", namespaces=NS) == "https://portico.test/sp"
    policy = child(request, "samlp:NameIDPolicy")
    assert policy.get("Format") == "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
    assert policy.get("AllowCreate") == "true"
    # No entityIssuer: no Issuer element (as Dex); an id that is not an NCName start gets "_".
    bare = parse(base64.b64decode((await connector(idp).post_data(Scopes(), "7abc")).saml_request))
    assert bare.find("saml:Issuer", NS) is None and bare.get("ID") == "_7abc"


async def test_login_with_response_and_assertion_signed(idp: SamlIdp, signed_both: IdpAnswer) -> None:
    conn = connector(idp)
    identity = await conn.handle_post(GROUPS, signed_both.saml_response, "req-both")
    assert (identity.user_id, identity.username, identity.email) == ("jane-0001", "jane", "jane@example.com")
    assert identity.email_verified and identity.groups == ("admins", "developers")
    assert json.loads(identity.connector_data or b"") == {
        "userId": "jane-0001", "username": "jane", "preferredUsername": "", "email": "jane@example.com",
        "emailVerified": True, "groups": ["admins", "developers"],
    }
    # Refresh hands back the identity cached at login (SAML has no refresh); groups only when asked for.
    stale = Identity(user_id="x", connector_data=identity.connector_data)
    assert await conn.refresh(GROUPS, stale) == identity
    assert (await conn.refresh(Scopes(), stale)).groups == ()
    with pytest.raises(ConnectorError):
        await conn.refresh(GROUPS, Identity(user_id="x"))


async def test_login_with_only_the_assertion_signed(idp: SamlIdp, signed_assertion: IdpAnswer) -> None:
    assert len(parse(signed_assertion.xml()).findall("ds:Signature", NS)) == 0
    identity = await connector(idp).handle_post(Scopes(), signed_assertion.saml_response, "req-assertion")
    assert identity.user_id == "jane-0001" and identity.groups == ()  # groups not asked for


async def test_request_id_that_needs_a_prefix_round_trips(idp: SamlIdp) -> None:
    conn = connector(idp)
    answer = await alogin(idp, conn, "9starts-with-a-digit", userName="u-9")
    assert parse(answer.xml()).get("InResponseTo") == "_9starts-with-a-digit"
    assert (await conn.handle_post(GROUPS, answer.saml_response, "9starts-with-a-digit")).user_id == "u-9"


async def test_groups_delimited_allowed_and_filtered(idp: SamlIdp) -> None:
    delimited = connector(idp, groupsAttr="groupList", groupsDelim=";")
    answer = await alogin(idp, delimited, "req-delim", groupList="ops; dev ;qa")
    identity = await delimited.handle_post(GROUPS, answer.saml_response, "req-delim")
    assert identity.groups == ("ops", "dev", "qa")

    keep_all = connector(idp, allowedGroups=["developers", "other"])
    answer = await alogin(idp, keep_all, "req-allowed")
    assert (await keep_all.handle_post(GROUPS, answer.saml_response, "req-allowed")).groups == (
        "admins", "developers")

    filtered = connector(idp, allowedGroups=["developers", "other"], filterGroups=True)
    answer = await alogin(idp, filtered, "req-filter")
    assert (await filtered.handle_post(GROUPS, answer.saml_response, "req-filter")).groups == ("developers",)

    outsider = connector(idp, allowedGroups=["admins"])
    answer = await alogin(idp, outsider, "req-outsider", groups="guests,visitors")
    error = await refused(outsider, answer.saml_response, "req-outsider", "groups")
    assert isinstance(error, UserNotInRequiredGroupsError)


async def test_missing_email_is_refused(idp: SamlIdp) -> None:
    conn = connector(idp)
    answer = await alogin(idp, conn, "req-noemail", email="")
    error = await refused(conn, answer.saml_response, "req-noemail", "attributes")
    assert "'email'" in str(error)


# --- answers that are not for this request, or not now -----------------------------------------


async def test_wrong_in_response_to_and_replay(idp: SamlIdp, signed_both: IdpAnswer) -> None:
    conn = connector(idp)
    await refused(conn, signed_both.saml_response, "req-other", "in_response_to")
    await conn.handle_post(GROUPS, signed_both.saml_response, "req-both")
    await refused(conn, signed_both.saml_response, "req-both", "replayed")
    # A reload reopens the connector: handed the same record, the new instance still refuses it.
    shared = MemoryReplayCache(FrozenClock(datetime.now(UTC)))
    before, after = (open_saml("saml", config(idp), replay=shared) for _ in range(2))
    await before.handle_post(GROUPS, signed_both.saml_response, "req-both")
    await refused(after, signed_both.saml_response, "req-both", "replayed")


async def test_replay_of_an_assertion_only_response(idp: SamlIdp, signed_assertion: IdpAnswer) -> None:
    conn = connector(idp)
    await conn.handle_post(GROUPS, signed_assertion.saml_response, "req-assertion")
    await refused(conn, signed_assertion.saml_response, "req-assertion", "replayed")
    # The unsigned envelope can only make things fail: a new InResponseTo there changes nothing.
    root = parse(signed_assertion.xml())
    root.set("InResponseTo", "req-other")
    await refused(conn, encode(root), "req-other", "in_response_to")


async def test_validity_window_with_clock_skew(idp: SamlIdp, signed_both: IdpAnswer) -> None:
    until = not_on_or_after(signed_both)
    late = connector(idp, FrozenClock(until + timedelta(seconds=31)))
    error = await refused(late, signed_both.saml_response, "req-both", "expired")
    assert "expired" in str(error)
    within_skew = connector(idp, FrozenClock(until + timedelta(seconds=29)))
    identity = await within_skew.handle_post(GROUPS, signed_both.saml_response, "req-both")
    assert identity.user_id == "jane-0001"
    early = connector(idp, FrozenClock(until - timedelta(hours=1, minutes=5)))
    await refused(early, signed_both.saml_response, "req-both", "not_yet_valid")


async def test_wrong_audience_issuer_destination_recipient(idp: SamlIdp, signed_both: IdpAnswer) -> None:
    await refused(connector(idp, entityIssuer="https://other.test/sp"), signed_both.saml_response, "req-both",
                  "audience")
    await refused(connector(idp, ssoIssuer="urn:other:idp"), signed_both.saml_response, "req-both", "issuer")
    # The IdP itself (its key) signs answers that name another ACS: still not for us.
    root = parse(signed_both.xml())
    root.set("Destination", "https://evil.test/acs")
    await refused(connector(idp), encode(sign(root, idp.keys)), "req-both", "destination")
    root = parse(signed_both.xml())
    assertion = assertion_of(root)
    child(assertion, ".//saml:SubjectConfirmationData").set("Recipient", "https://evil.test/acs")
    root = sign(sign_in_place(root, assertion, idp.keys), idp.keys)
    await refused(connector(idp), encode(root), "req-both", "recipient")


async def test_error_status_is_reported(idp: SamlIdp, signed_both: IdpAnswer) -> None:
    root = parse(signed_both.xml())
    root.remove(assertion_of(root))
    code = child(root, "samlp:Status/samlp:StatusCode")
    code.set("Value", "urn:oasis:names:tc:SAML:2.0:status:Requester")
    etree.SubElement(code, f"{SAML_P}StatusCode", Value="urn:oasis:names:tc:SAML:2.0:status:AuthnFailed")
    etree.SubElement(child(root, "samlp:Status"), f"{SAML_P}StatusMessage").text = "wrong password"
    for document in (sign(root, idp.keys), strip_signatures(copy.deepcopy(root))):
        error = await refused(connector(idp), encode(document), "req-both", "status")
        assert "Requester/AuthnFailed" in str(error) and "wrong password" in str(error)


# --- forged answers ------------------------------------------------------------------------------


async def test_unsigned_and_tampered_responses_are_refused(idp: SamlIdp, signed_both: IdpAnswer) -> None:
    conn = connector(idp)
    await refused(conn, encode(strip_signatures(parse(signed_both.xml()))), "req-both", "signature")
    # Changing a signed value breaks both digests; with the Response one gone, the Assertion's still fails.
    root = parse(signed_both.xml())
    child(assertion_of(root), ".//saml:NameID").text = "admin"
    await refused(conn, encode(root), "req-both", "signature")
    root.remove(child(root, "ds:Signature"))
    await refused(conn, encode(root), "req-both", "signature")


async def test_responses_signed_by_another_key_are_refused(
    idp: SamlIdp, signed_both: IdpAnswer, attacker: KeyPair
) -> None:
    root = parse(signed_both.xml())
    assertion = assertion_of(root)
    child(assertion, ".//saml:NameID").text = "admin"
    forged = sign(sign_in_place(root, assertion, attacker), attacker)
    await refused(connector(idp), encode(forged), "req-both", "signature")
    # The same forgery passes only where the attacker's certificate is trusted (several certs: rotation).
    both = base64.b64encode(idp.keys.cert_pem + attacker.cert_pem).decode()
    identity = await connector(idp, caData=both).handle_post(GROUPS, encode(forged), "req-both")
    assert identity.user_id == "admin"


@pytest.mark.parametrize("where", ["before", "after", "extensions", "object"])
async def test_signature_wrapping_is_refused(
    idp: SamlIdp, signed_assertion: IdpAnswer, signed_both: IdpAnswer, where: str
) -> None:
    answer = signed_both if where == "object" else signed_assertion
    request_id = "req-both" if where == "object" else "req-assertion"
    root = parse(answer.xml())
    signed = assertion_of(root)
    evil = evil_assertion(signed)
    if where == "before":
        signed.addprevious(evil)
    elif where == "after":
        signed.addnext(evil)
    elif where == "extensions":  # the signed one hidden where a careless reader does not look
        extensions = etree.Element(f"{SAML_P}Extensions")
        child(root, "saml:Issuer").addnext(extensions)
        signed.addprevious(evil)
        extensions.append(signed)
    else:  # XSW1: the signed original in a ds:Object of a new envelope holding the evil assertion
        wrapper = copy.deepcopy(root)
        wrapper.set("ID", "_evil-response")
        wrapper.replace(assertion_of(wrapper), evil)
        holder = etree.SubElement(wrapper, "{http://www.w3.org/2000/09/xmldsig#}Object")
        holder.append(root)
        root = wrapper
    await refused(connector(idp), encode(root), request_id, "wrapping")


async def test_only_the_signed_text_is_read(idp: SamlIdp) -> None:
    """A comment inside a signed NameID (excluded from c14n) must not truncate it (CVE-2017-11427 class)."""
    conn = connector(idp)
    answer = await alogin(idp, conn, "req-comment", sign_response=False, userName="admin.attacker")
    root = parse(answer.xml())
    name_id = child(assertion_of(root), ".//saml:NameID")
    name_id.text = "admin"
    name_id.append(etree.Comment("x"))
    name_id[-1].tail = ".attacker"
    identity = await conn.handle_post(GROUPS, encode(root), "req-comment")
    assert identity.user_id == "admin.attacker"


async def test_sha1_signatures_and_hostile_xml_are_refused(idp: SamlIdp, signed_both: IdpAnswer) -> None:
    root = parse(signed_both.xml())
    assertion = assertion_of(root)
    sha1 = sign(assertion, idp.keys, algorithm="rsa-sha1", digest="sha1")
    root.replace(assertion, sha1)
    root.remove(child(root, "ds:Signature"))
    await refused(connector(idp), encode(root), "req-both", "signature")
    conn = connector(idp)
    await refused(conn, "not base64!", "req-both", "malformed")
    await refused(conn, base64.b64encode(b"<a>").decode(), "req-both", "malformed")
    laughs = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
              b'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">&b;</samlp:Response>')
    await refused(conn, base64.b64encode(laughs).decode(), "req-both", "malformed")
    await refused(conn, base64.b64encode(b"<x/>").decode(), "req-both", "malformed")


async def test_insecure_skip_signature_validation_accepts_unsigned(
    idp: SamlIdp, signed_both: IdpAnswer
) -> None:
    conn = connector(idp, caData=None, insecureSkipSignatureValidation=True)
    unsigned = encode(strip_signatures(parse(signed_both.xml())))
    assert (await conn.handle_post(GROUPS, unsigned, "req-both")).user_id == "jane-0001"


# --- metadata and config -------------------------------------------------------------------------


def test_sp_metadata(idp: SamlIdp) -> None:
    for entity_issuer in (None, "https://portico.test/sp"):
        entity_id = entity_issuer or ACS  # as Dex: redirectURI stands in for a missing entityIssuer
        document = etree.fromstring(connector(idp, entityIssuer=entity_issuer).metadata_xml().encode())
        assert document.tag == "{urn:oasis:names:tc:SAML:2.0:metadata}EntityDescriptor"
        assert document.get("entityID") == entity_id
        acs = child(document, "md:SPSSODescriptor/md:AssertionConsumerService")
        assert acs.get("Location") == ACS
        assert acs.get("Binding") == "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
        assert document.findtext("md:SPSSODescriptor/md:NameIDFormat", namespaces=NS) == (
            "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"ssoURL": None, "emailAttr": None}, "missing required fields ssoURL, emailAttr"),
    ({"redirectURI": ""}, "missing required field redirectURI"),
    ({"caData": None}, "either 'ca' or 'caData'"),
    ({"ca": "/some/file"}, "either 'ca' or 'caData'"),
    ({"caData": "%%%"}, "caData is not valid base64"),
    ({"caData": base64.b64encode(b"no pem here").decode()}, "certificate"),
    ({"nameIDPolicyFormat": "bogus"}, "invalid nameIDPolicyFormat"),
    ({"allowedGroups": ["a"], "groupsAttr": None}, "allowedGroups needs groupsAttr"),
    ({"ssoUrlx": "x"}, "unknown key 'ssoUrlx'"),
    ({"SSOURL": "https://idp.test/sso"}, "ssoURL is given twice"),
])
def test_bad_configs_are_refused(idp: SamlIdp, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_saml("saml", config(idp, **overrides))


def test_config_keys_are_case_insensitive_and_formats_have_short_names(idp: SamlIdp, tmp_path: Path) -> None:
    ca_file = tmp_path / "idp.pem"
    ca_file.write_bytes(idp.keys.cert_pem)
    conn = open_saml("saml", {"SSOURL": idp.sso_url, "CA": str(ca_file), "redirecturi": ACS,
                              "usernameattr": "uid", "EmailAttr": "email", "nameIDPolicyFormat": "transient"})
    assert conn.config.sso_url == idp.sso_url and conn.config.certs is not None
    assert conn.config.name_id_policy_format == "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
    urn = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
    assert connector(idp, nameIDPolicyFormat=urn).config.name_id_policy_format == urn
    assert "caData" not in repr(conn) and "BEGIN" not in repr(conn.config)


def test_a_signature_over_another_element_is_not_taken_for_this_one(signed_assertion: IdpAnswer) -> None:
    """Behind the one-Assertion rule: the signed copy must be the element handed in (same tag and ID)."""
    signed = assertion_of(parse(signed_assertion.xml()))
    evil = evil_assertion(signed)
    cert = signing_cert(signed)
    evil.insert(1, child(signed, "ds:Signature"))  # moved: its Reference points at the original
    evil.append(signed)  # nested inside, so the Reference resolves and the digest holds
    with pytest.raises(SAMLError) as caught:
        _signed_copy(evil, [cert])
    assert caught.value.reason == "wrapping"
