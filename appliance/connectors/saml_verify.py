"""Verifies a SAML Response (signature, wrapping, status, bindings, conditions) and returns only signed data.

Synchronous and CPU-bound: the connector runs it in a thread. Every value that vouches for the user
is read from the element signxml returns as signed (re-parsed from the canonical form, so comments
and unsigned siblings are gone), never from the posted tree. The few envelope fields of a Response
whose Assertion alone is signed are only ever used to refuse, never to accept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from lxml import etree
from signxml.verifier import SignatureConfiguration, XMLVerifier

from appliance.connectors.saml_xml import (
    CM_BEARER,
    NS_ASSERTION,
    NS_DSIG,
    NS_PROTOCOL,
    STATUS_SUCCESS,
    SAMLError,
    parse_time,
    parse_xml,
    q,
)

# Dex's allowed clock drift for NotBefore / NotOnOrAfter.
CLOCK_SKEW = timedelta(seconds=30)
# An enveloped signature sits directly under the element it signs and covers exactly that element.
_SIGNATURE_CONFIG = SignatureConfiguration(location="./", expect_references=1)


@dataclass(frozen=True)
class Expectations:
    """What the answer to one AuthnRequest must say."""

    in_response_to: str  # the AuthnRequest ID
    acs_url: str  # redirectURI: Destination and Recipient
    audience: str  # entityIssuer, or redirectURI when that is unset (as Dex)
    sso_issuer: str  # the IdP's entity ID; empty: not checked
    now: datetime
    skew: timedelta = CLOCK_SKEW


@dataclass(frozen=True)
class VerifiedAssertion:
    """The facts of a verified assertion."""

    assertion_id: str
    name_id: str
    attributes: dict[str, list[str]]
    valid_until: datetime | None  # the earliest NotOnOrAfter that applied (for the replay record)


def verify_response(
    xml: bytes, certs: Sequence[x509.Certificate] | None, expect: Expectations
) -> VerifiedAssertion:
    """Check a decoded SAMLResponse; `certs` None means insecureSkipSignatureValidation."""
    root = parse_xml(xml)
    if root.tag != q(NS_PROTOCOL, "Response"):
        raise SAMLError("malformed", f"the document is a {etree.QName(root).localname}, not a samlp:Response")
    # An IdP's error answer is often unsigned: say what it was. This can only refuse, never accept.
    _check_status(root.find(q(NS_PROTOCOL, "Status")), required=False)
    if root.find(".//" + q(NS_ASSERTION, "EncryptedAssertion")) is not None:
        raise SAMLError("malformed", "encrypted assertions are not supported")
    assertions = root.findall(".//" + q(NS_ASSERTION, "Assertion"))
    if len(assertions) != 1:
        raise SAMLError("wrapping", f"expected exactly one Assertion, found {len(assertions)}")
    if assertions[0].getparent() is not root:
        raise SAMLError("wrapping", "the Assertion is not a direct child of the Response")

    if certs is None:
        envelope, assertion, envelope_signed = root, assertions[0], True
    else:
        envelope, assertion, envelope_signed = _verified(root, assertions[0], certs)
    _check_envelope(envelope, expect, signed=envelope_signed)
    return _check_assertion(assertion, expect)


def _verified(
    root: etree._Element, assertion: etree._Element, certs: Sequence[x509.Certificate]
) -> tuple[etree._Element, etree._Element, bool]:
    """(envelope, assertion, envelope_signed) where the assertion is always a signed copy."""
    root_error: SAMLError | None = None
    if root.find(q(NS_DSIG, "Signature")) is not None:
        try:
            response = _signed_copy(root, certs)
        except SAMLError as exc:
            # As Dex: a Response signature that fails still leaves a signed Assertion to try.
            root_error = exc
        else:
            found = response.findall(q(NS_ASSERTION, "Assertion"))
            if len(found) != 1:
                raise SAMLError("wrapping", "the signed Response does not hold exactly one Assertion")
            return response, found[0], True
    if assertion.find(q(NS_DSIG, "Signature")) is not None:
        try:
            return root, _signed_copy(assertion, certs), False
        except SAMLError as exc:
            if root_error is None or exc.reason != root_error.reason:
                raise
            raise SAMLError(exc.reason, f"{root_error.detail}; {exc.detail}") from exc
    raise root_error or SAMLError("signature", "neither the Response nor its Assertion is signed")


def _signed_copy(element: etree._Element, certs: Sequence[x509.Certificate]) -> etree._Element:
    """The signed copy of `element` from signxml, checked to be that very element (same tag and ID)."""
    name = etree.QName(element).localname
    element_id = element.get("ID")
    if not element_id:
        raise SAMLError("signature", f"the signed {name} has no ID")
    failures: list[str] = []
    for cert in certs:
        try:
            result = XMLVerifier().verify(
                element, x509_cert=cert, id_attribute="ID", expect_config=_SIGNATURE_CONFIG
            )
        except Exception as exc:  # any failure to verify means "not signed by a trusted key"
            failures.append(f"{type(exc).__name__}: {exc}")
            continue
        signed = result.signed_xml if not isinstance(result, list) else None
        if signed is None or signed.tag != element.tag or signed.get("ID") != element_id:
            raise SAMLError("wrapping", f"the {name} signature covers another element")
        return signed
    raise SAMLError("signature", f"the {name} signature does not verify with the configured certificates: "
                    + "; ".join(failures)[:500])


def _check_status(status: etree._Element | None, *, required: bool) -> None:
    if status is None:
        if required:
            raise SAMLError("status", "the Response has no Status")
        return
    code = status.find(q(NS_PROTOCOL, "StatusCode"))
    value = code.get("Value", "") if code is not None else ""
    if value == STATUS_SUCCESS:
        return
    if code is None:
        raise SAMLError("status", "the Status has no StatusCode")
    # "Requester/AuthnFailed": the top-level code and the second-level one that says why.
    parts = [value.rsplit(":", 1)[-1]]
    inner = code.find(q(NS_PROTOCOL, "StatusCode"))
    if inner is not None and inner.get("Value"):
        parts.append(inner.get("Value", "").rsplit(":", 1)[-1])
    detail = f"the IdP answered {'/'.join(parts)!r}"
    message = status.findtext(q(NS_PROTOCOL, "StatusMessage"))
    if message and message.strip():
        detail += f" ({message.strip()[:200]!r})"
    raise SAMLError("status", detail)


def _check_envelope(response: etree._Element, expect: Expectations, *, signed: bool) -> None:
    """Response-level fields. Unsigned ones (Assertion-only signature) are checked when present, to refuse."""
    _check_status(response.find(q(NS_PROTOCOL, "Status")), required=signed)
    in_response_to = response.get("InResponseTo")
    if (signed or in_response_to is not None) and in_response_to != expect.in_response_to:
        raise SAMLError("in_response_to", f"the Response answers {in_response_to!r}, not this request")
    destination = response.get("Destination")
    if destination is not None and destination != expect.acs_url:
        raise SAMLError("destination", f"the Response is for {destination!r}, not {expect.acs_url!r}")
    issuer = response.findtext(q(NS_ASSERTION, "Issuer"))
    if expect.sso_issuer and issuer is not None and issuer.strip() != expect.sso_issuer:
        raise SAMLError("issuer", f"the Response comes from {issuer.strip()!r}, not {expect.sso_issuer!r}")


def _check_assertion(assertion: etree._Element, expect: Expectations) -> VerifiedAssertion:
    assertion_id = assertion.get("ID")
    if not assertion_id:
        raise SAMLError("malformed", "the Assertion has no ID")
    issuer = assertion.findtext(q(NS_ASSERTION, "Issuer"))
    if expect.sso_issuer and (issuer or "").strip() != expect.sso_issuer:
        raise SAMLError("issuer", f"the Assertion comes from {issuer!r}, not {expect.sso_issuer!r}")
    subject = assertion.find(q(NS_ASSERTION, "Subject"))
    if subject is None:
        raise SAMLError("subject", "the Assertion has no Subject")
    until = [_check_confirmations(subject, expect)]
    until.append(_check_conditions(assertion.find(q(NS_ASSERTION, "Conditions")), expect))
    name_id_element = subject.find(q(NS_ASSERTION, "NameID"))
    if name_id_element is None:
        encrypted = subject.find(q(NS_ASSERTION, "EncryptedID")) is not None
        raise SAMLError("subject", f"the Subject has {'an encrypted NameID' if encrypted else 'no NameID'}")
    name_id = "".join(name_id_element.itertext()).strip()
    if not name_id:
        raise SAMLError("subject", "the NameID is empty")
    statements = assertion.findall(q(NS_ASSERTION, "AttributeStatement"))
    if not statements:
        raise SAMLError("attributes", "the Assertion has no AttributeStatement")
    attributes: dict[str, list[str]] = {}
    for statement in statements:
        for attribute in statement.findall(q(NS_ASSERTION, "Attribute")):
            values = attributes.setdefault(attribute.get("Name", ""), [])
            for value in attribute.findall(q(NS_ASSERTION, "AttributeValue")):
                values.append("".join(value.itertext()).strip())
    known = [moment for moment in until if moment is not None]
    return VerifiedAssertion(assertion_id, name_id, attributes, min(known) if known else None)


def _check_window(element: etree._Element, what: str, expect: Expectations) -> datetime | None:
    """NotBefore / NotOnOrAfter of `element` with the allowed skew; the NotOnOrAfter, if any."""
    not_before = element.get("NotBefore")
    if not_before is not None and expect.now + expect.skew < parse_time(not_before, f"{what} NotBefore"):
        raise SAMLError("not_yet_valid", f"{what} is valid only from {not_before} (now {_iso(expect.now)})")
    not_on_or_after = element.get("NotOnOrAfter")
    if not_on_or_after is None:
        return None
    until = parse_time(not_on_or_after, f"{what} NotOnOrAfter")
    if expect.now >= until + expect.skew:
        raise SAMLError("expired", f"{what} expired at {not_on_or_after} (now {_iso(expect.now)})")
    return until


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_confirmations(subject: etree._Element, expect: Expectations) -> datetime | None:
    """One bearer SubjectConfirmation must fit this request (Web SSO profile 4.1.4.2, as Dex checks it)."""
    confirmations = subject.findall(q(NS_ASSERTION, "SubjectConfirmation"))
    if not confirmations:
        raise SAMLError("subject", "the Subject has no SubjectConfirmation")
    first: SAMLError | None = None
    for confirmation in confirmations:
        try:
            return _check_confirmation(confirmation, expect)
        except SAMLError as exc:
            first = first or exc
    assert first is not None
    raise first


def _check_confirmation(confirmation: etree._Element, expect: Expectations) -> datetime | None:
    method = confirmation.get("Method")
    if method != CM_BEARER:
        raise SAMLError("subject", f"unexpected SubjectConfirmation method {method!r}")
    data = confirmation.find(q(NS_ASSERTION, "SubjectConfirmationData"))
    if data is None:
        raise SAMLError("subject", "the SubjectConfirmation has no SubjectConfirmationData")
    in_response_to = data.get("InResponseTo")
    if in_response_to != expect.in_response_to:
        raise SAMLError("in_response_to", f"the Assertion answers {in_response_to!r}, not this request")
    until = _check_window(data, "SubjectConfirmationData", expect)
    recipient = data.get("Recipient")
    if recipient is not None and recipient != expect.acs_url:
        raise SAMLError("recipient", f"the Assertion is for {recipient!r}, not {expect.acs_url!r}")
    return until


def _check_conditions(conditions: etree._Element | None, expect: Expectations) -> datetime | None:
    """The validity window and the audience; stricter than Dex, an AudienceRestriction is required."""
    if conditions is None:
        raise SAMLError("audience", "the Assertion has no Conditions (so no AudienceRestriction)")
    until = _check_window(conditions, "Conditions", expect)
    restrictions = conditions.findall(q(NS_ASSERTION, "AudienceRestriction"))
    if not restrictions:
        raise SAMLError("audience", "the Assertion has no AudienceRestriction")
    for restriction in restrictions:  # each one must name us (SAML core 2.5.1.4)
        audiences = [(a.text or "").strip() for a in restriction.findall(q(NS_ASSERTION, "Audience"))]
        if expect.audience not in audiences:
            raise SAMLError("audience", f"the Assertion is for {audiences!r}, not {expect.audience!r}")
    return until
