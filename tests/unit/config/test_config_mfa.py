"""The `mfa` section (Dex main's shape) and staticClients[].mfaChain: values, and every problem with its
key path and line."""

from __future__ import annotations

from appliance.config.load import parse_config
from appliance.config.schema import Config, MFAAuthenticator, Problem

HEAD = """\
issuer: http://127.0.0.1:5556/dex
storage: {type: memory}
web: {http: 127.0.0.1:5556}
enablePasswordDB: true
connectors:
  - {type: ldap, id: corp, name: Corp, config: {host: "ldap.example:636"}}
"""


def parse(body: str) -> tuple[Config | None, list[Problem]]:
    return parse_config(HEAD + body, env={})


def where(problems: list[Problem]) -> list[tuple[str, str, int]]:
    return [(p.severity, p.path, p.line) for p in problems]


def test_dex_main_example_runs_unchanged() -> None:
    # The shape of Dex main's examples/config-dev.yaml, WebAuthn declared but in no chain.
    config, problems = parse("""\
mfa:
  authenticators:
  - id: totp-1
    type: TOTP
    config:
      issuer: "dex-1"
    connectorTypes:
    - local
  - id: webauthn-1
    type: WebAuthn
    config:
      rpDisplayName: "Dex Dev"
      attestationPreference: "indirect"
      userVerification: "preferred"
      timeout: "60s"
  defaultMFAChain:
  - totp-1
staticClients:
- id: example-app
  name: Example App
  secret: s
  redirectURIs: [http://127.0.0.1:5555/callback]
- id: no-mfa
  name: No MFA
  secret: s
  redirectURIs: [http://127.0.0.1:5555/callback]
  mfaChain: []
- id: own-chain
  name: Own chain
  secret: s
  redirectURIs: [http://127.0.0.1:5555/callback]
  mfaChain: [totp-1]
""")
    assert config is not None, [str(p) for p in problems]
    assert where(problems) == [("warning", "mfa.authenticators[1].type", 16)]
    assert "WebAuthn is not supported" in problems[0].message
    assert config.mfa.authenticators == (
        MFAAuthenticator(id="totp-1", type="TOTP", issuer="dex-1", connector_types=("local",)),
    )
    assert config.mfa.default_chain == ("totp-1",)
    assert config.mfa.allow_password_grant is False
    assert [c.mfa_chain for c in config.static_clients] == [None, (), ("totp-1",)]


def test_portico_keys_enrollment_and_password_grant() -> None:
    config, problems = parse("""\
mfa:
  allowPasswordGrant: true
  authenticators:
  - {id: otp, type: TOTP, config: {enrollment: optional}}
  defaultMFAChain: [otp]
""")
    assert config is not None and problems == []
    assert config.mfa.authenticators[0].enrollment == "optional"
    assert config.mfa.authenticators[0].connector_types == ()  # every connector type, as in Dex
    assert config.mfa.allow_password_grant is True


def test_chains_naming_unknown_or_webauthn_authenticators_are_errors() -> None:
    config, problems = parse("""\
mfa:
  authenticators:
  - {id: totp-1, type: TOTP}
  - {id: key, type: WebAuthn}
  defaultMFAChain: [totp1, key]
staticClients:
- id: app
  name: App
  secret: s
  redirectURIs: [http://127.0.0.1:5555/callback]
  mfaChain:
  - totp-1
  - nope
""")
    assert config is None
    errors = [p for p in problems if p.severity == "error"]
    assert where(errors) == [
        ("error", "mfa.defaultMFAChain[0]", 11),
        ("error", "mfa.defaultMFAChain[1]", 11),
        ("error", "staticClients[0].mfaChain[1]", 19),
    ]
    assert 'no authenticator has id "totp1"' in errors[0].message
    assert 'did you mean "totp-1"' in errors[0].message
    assert "WebAuthn, which Portico cannot run yet" in errors[1].message
    assert 'no authenticator has id "nope"' in errors[2].message


def test_authenticator_problems() -> None:
    config, problems = parse("""\
mfa:
  authenticators:
  - {id: a, type: totp}
  - {type: TOTP}
  - {id: b, type: TOTP, connectorTypes: [ldapp], config: {enrollment: sometimes, isuer: x}}
  - {id: b, type: TOTP}
  defaultMfaChain: [b]
  defaults: []
""")
    assert config is None
    got = {(p.severity, p.path, p.line): p.message for p in problems}
    assert 'unknown authenticator type "totp"' in got[("error", "mfa.authenticators[0].type", 9)]
    assert "needs an id" in got[("error", "mfa.authenticators[1].id", 10)]
    assert 'unknown connector type "ldapp"' in got[("warning", "mfa.authenticators[2].connectorTypes[0]", 11)]
    assert 'must be "required" or "optional"' in got[("error", "mfa.authenticators[2].config.enrollment", 11)]
    assert "unknown key" in got[("error", "mfa.authenticators[2].config.isuer", 11)]
    assert 'duplicate authenticator id "b"' in got[("error", "mfa.authenticators[3].id", 12)]
    assert 'did you mean "defaultMFAChain"' in got[("error", "mfa.defaults", 14)]


def test_authenticator_in_no_chain_is_a_warning() -> None:
    config, problems = parse("""\
mfa:
  authenticators:
  - {id: lonely, type: TOTP}
""")
    assert config is not None
    assert where(problems) == [("warning", "mfa.authenticators[0]", 9)]
    assert "nobody is asked for it" in problems[0].message


def test_no_mfa_section_means_no_second_factor() -> None:
    config, problems = parse("")
    assert config is not None and problems == []
    assert config.mfa.authenticators == () and config.mfa.default_chain == ()
