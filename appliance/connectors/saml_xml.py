"""SAML 2.0 wire format for the saml connector: names, errors, safe parsing, times, request, metadata."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from lxml import etree

from appliance.connectors.base import UserNotInRequiredGroupsError
from appliance.errors import ConnectorError

NS_PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
NS_ASSERTION = "urn:oasis:names:tc:SAML:2.0:assertion"
NS_METADATA = "urn:oasis:names:tc:SAML:2.0:metadata"
NS_DSIG = "http://www.w3.org/2000/09/xmldsig#"

BINDING_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
CM_BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"

# Dex's list: a short name (the part after the last ':') or the full URN selects the format.
NAME_ID_FORMATS = (
    "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
    "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName",
    "urn:oasis:names:tc:SAML:1.1:nameid-format:WindowsDomainQualifiedName",
    "urn:oasis:names:tc:SAML:2.0:nameid-format:encrypted",
    "urn:oasis:names:tc:SAML:2.0:nameid-format:entity",
    "urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos",
    "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
    "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
)
DEFAULT_NAME_ID_FORMAT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"

# A SAMLResponse larger than this is refused before it is decoded (real ones are a few KiB).
MAX_RESPONSE_BYTES = 512 * 1024

_NCNAME_START = re.compile(r"[A-Za-z_]")
_NCNAME_REST = re.compile(r"[A-Za-z0-9_.\-]*")
# xs:dateTime as IdPs send it: optional fraction, then Z, an offset, or nothing (read as UTC).
_DATETIME = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?"
)


class SAMLError(ConnectorError):
    """A SAML response Portico will not accept; `reason` is a stable code, the message the detail for logs.

    Reasons: malformed, status, signature, wrapping, in_response_to, destination, recipient, audience,
    issuer, expired, not_yet_valid, subject, attributes, replayed, groups.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"saml {reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SAMLGroupsError(SAMLError, UserNotInRequiredGroupsError):
    """The user is in none of allowedGroups (a 403, not an upstream failure)."""

    def __init__(self, detail: str) -> None:
        SAMLError.__init__(self, "groups", detail)


def q(namespace: str, local: str) -> str:
    """The Clark name lxml uses for a namespaced tag."""
    return f"{{{namespace}}}{local}"


def name_id_format(value: str) -> str:
    """The NameID format URN for a config value (empty: persistent); ValueError for an unknown one."""
    if not value:
        return DEFAULT_NAME_ID_FORMAT
    for fmt in NAME_ID_FORMATS:
        if value in (fmt, fmt.rsplit(":", 1)[1]):
            return fmt
    raise ValueError(f"invalid nameIDPolicyFormat: {value!r}")


def saml_id(request_id: str) -> str:
    """The xs:ID for a Portico auth request id: used as is when it is an NCName, else prefixed with '_'."""
    if not request_id or not _NCNAME_REST.fullmatch(request_id):
        raise ValueError("the auth request id cannot be used as a SAML ID")
    return request_id if _NCNAME_START.match(request_id) else f"_{request_id}"


def _parser() -> etree.XMLParser:
    # As defusedxml: no entity expansion, no network, no huge trees; a DOCTYPE is refused below.
    return etree.XMLParser(
        resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False, dtd_validation=False,
        remove_pis=True,
    )


def parse_xml(data: bytes) -> etree._Element:
    """Parse an untrusted document; SAMLError('malformed') when it is not plain, well-formed XML."""
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise SAMLError("malformed", f"not well-formed XML: {exc}") from exc
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise SAMLError("malformed", "a DOCTYPE is not allowed in a SAML response")
    return root


def parse_time(value: str, what: str) -> datetime:
    """An xs:dateTime attribute as an aware UTC datetime; SAMLError('malformed') when unreadable."""
    match = _DATETIME.fullmatch(value.strip())
    if match is None:
        raise SAMLError("malformed", f"{what} is not a dateTime: {value[:40]!r}")
    base, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    try:
        parsed = datetime.fromisoformat(f"{base}.{micro}{'+00:00' if zone in (None, 'Z') else zone}")
    except ValueError as exc:
        raise SAMLError("malformed", f"{what} is not a valid time: {value[:40]!r}") from exc
    return parsed.astimezone(UTC)


def format_time(moment: datetime) -> str:
    """SAML's time format (UTC, seconds, 'Z'), as Dex writes IssueInstant."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_authn_request(
    *, request_id: str, issue_instant: datetime, destination: str, acs_url: str, issuer: str,
    name_id_format: str,
) -> bytes:
    """The AuthnRequest (unsigned, as Dex sends it) for the HTTP-POST binding."""
    nsmap = {"samlp": NS_PROTOCOL, "saml": NS_ASSERTION}
    request = etree.Element(q(NS_PROTOCOL, "AuthnRequest"), nsmap=nsmap)
    request.set("ID", saml_id(request_id))
    request.set("Version", "2.0")
    request.set("IssueInstant", format_time(issue_instant))
    request.set("Destination", destination)
    request.set("ProtocolBinding", BINDING_POST)
    request.set("AssertionConsumerServiceURL", acs_url)
    if issuer:  # optional; some IdPs (Okta) ignore it
        etree.SubElement(request, q(NS_ASSERTION, "Issuer")).text = issuer
    policy = etree.SubElement(request, q(NS_PROTOCOL, "NameIDPolicy"))
    policy.set("Format", name_id_format)
    policy.set("AllowCreate", "true")
    return etree.tostring(request, xml_declaration=True, encoding="UTF-8")


def build_metadata(*, entity_id: str, acs_url: str, name_id_format: str) -> str:
    """SP metadata for the IdP administrator to import: entity ID, the HTTP-POST ACS, the NameID format."""
    descriptor = etree.Element(q(NS_METADATA, "EntityDescriptor"), nsmap={"md": NS_METADATA})
    descriptor.set("entityID", entity_id)
    sp = etree.SubElement(descriptor, q(NS_METADATA, "SPSSODescriptor"))
    sp.set("AuthnRequestsSigned", "false")
    sp.set("WantAssertionsSigned", "true")
    sp.set("protocolSupportEnumeration", NS_PROTOCOL)
    etree.SubElement(sp, q(NS_METADATA, "NameIDFormat")).text = name_id_format
    acs = etree.SubElement(sp, q(NS_METADATA, "AssertionConsumerService"))
    acs.set("Binding", BINDING_POST)
    acs.set("Location", acs_url)
    acs.set("index", "0")
    acs.set("isDefault", "true")
    text: str = etree.tostring(descriptor, pretty_print=True, xml_declaration=True, encoding="UTF-8").decode()
    return text
