"""The config schema of every connector type (Dex's keys), in one light module: the parsers take their
key names from here and the console's forms are built from it, so the two cannot drift apart.

No connector library is imported here: the admin API serves these without loading ldap3 or lxml.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from appliance.connectors.config_schema import Key, Login, Schema

__all__ = ["SCHEMAS", "schema_of"]


def _s(name: str, help: str = "", **kw: Any) -> Key:
    return Key(name, "string", help, **kw)


def _secret(name: str, help: str = "", **kw: Any) -> Key:
    return Key(name, "secret", help, **kw)


def _flag(name: str, help: str = "", **kw: Any) -> Key:
    return Key(name, "bool", help, **kw)


def _list(name: str, help: str = "", **kw: Any) -> Key:
    return Key(name, "strings", help, **kw)


def _choice(name: str, choices: tuple[str, ...], help: str = "", **kw: Any) -> Key:
    return Key(name, "choice", help, choices=choices, **kw)


def _object(name: str, help: str, *keys: Key, **kw: Any) -> Key:
    return Key(name, "object", help, keys=keys, **kw)


def _objects(name: str, help: str, *keys: Key, **kw: Any) -> Key:
    return Key(name, "objects", help, keys=keys, **kw)


def _schema(type_: str, login: Login, *keys: Key, strict: bool = True) -> Schema:
    return Schema(type_, login, keys, strict)


CALLBACK = "https://auth.example.com/dex/callback"
_CLIENT_ID = _s("clientID", "the client ID this provider issued to Portico", required=True, example="portico")
_CLIENT_SECRET = _secret("clientSecret", "the client secret this provider issued to Portico", required=True,
                         example="client-secret")
_REDIRECT_URI = _s("redirectURI", "Portico's callback URL, as registered with the provider", required=True,
                   example=CALLBACK)
_OAUTH_APP = (_CLIENT_ID, _CLIENT_SECRET, _REDIRECT_URI)
_ROOT_CA_FILE = _s("rootCA", "a PEM file of CA certificates to trust for the provider",
                   example="/etc/portico/ca.pem")
_USE_LOGIN_AS_ID = _flag("useLoginAsID", "use the login name as the user ID instead of the numeric ID")
_ORGS = _objects("orgs", "organisations whose members may log in (their teams become groups)",
                 _s("name", "the organisation", required=True, example="acme"),
                 _list("teams", "only members of these teams (empty: any member)", example=["admins"]))


LDAP = _schema(
    "ldap", "password",
    _s("host", "the directory server, host or host:port", required=True, example="ldap.example.com:636",
       default="port 636, or 389 with insecureNoSSL or startTLS"),
    _flag("insecureNoSSL", "plain LDAP without TLS: passwords cross the network in clear text"),
    _flag("insecureSkipVerify", "do not verify the server's TLS certificate"),
    _flag("startTLS", "connect in plain LDAP, then upgrade with StartTLS"),
    _s("rootCA", "a PEM file of CA certificates for the server's TLS certificate",
       example="/etc/portico/ldap-ca.pem"),
    _s("rootCAData", "the same CA certificates inline, as base64 of the PEM"),
    _s("clientCert", "a PEM client certificate file (with clientKey)"),
    _s("clientKey", "the client certificate's PEM key file"),
    _s("bindDN", "the service account used to search (empty: an anonymous search)",
       example="cn=portico,ou=services,dc=example,dc=com"),
    _secret("bindPW", "the service account's password (required with bindDN)"),
    _s("usernamePrompt", "the label of the username field on the login page", default="Username"),
    _object("userSearch", "how a login name is turned into a directory entry",
            _s("baseDN", "where users are searched", required=True, example="ou=people,dc=example,dc=com"),
            _s("filter", "an LDAP filter ANDed to the search", example="(objectClass=person)"),
            _list("username", "the attribute(s) matched against the login name", required=True,
                  example=["uid"]),
            _choice("scope", ("sub", "one"), "sub: the whole subtree; one: one level", default="sub"),
            _s("idAttr", "the attribute holding the user ID (DN for the entry's DN)", example="uid"),
            _s("emailAttr", "the attribute holding the email address", example="mail"),
            _s("nameAttr", "the attribute holding the display name", example="cn"),
            _s("preferredUsernameAttr", "the attribute for preferred_username", example="uid"),
            _s("emailSuffix", "appended to nameAttr when the directory has no email attribute")),
    _object("groupSearch", "how a user's groups are found (leave baseDN empty for no groups)",
            _s("baseDN", "where groups are searched", example="ou=groups,dc=example,dc=com"),
            _s("filter", "an LDAP filter ANDed to the search", example="(objectClass=groupOfNames)"),
            _choice("scope", ("sub", "one"), "sub: the whole subtree; one: one level", default="sub"),
            _s("userAttr", legacy="replaced by userMatchers"),
            _s("groupAttr", legacy="replaced by userMatchers"),
            _s("recursionGroupAttr", legacy="replaced by userMatchers"),
            _objects("userMatchers", "each pair finds groups whose groupAttr holds the user's userAttr",
                     _s("userAttr", "the user's attribute (DN for the entry's DN)", example="DN"),
                     _s("groupAttr", "the group's member attribute", example="member"),
                     _s("recursionGroupAttr", "follow nested groups through this attribute")),
            _s("nameAttr", "the attribute holding the group name", example="cn")),
    _object("kerberos", "", legacy="Kerberos single sign-on is not supported; it is ignored"),
)

SAML = _schema(
    "saml", "saml",
    _s("ssoURL", "the identity provider's single sign-on URL (HTTP-POST binding)", required=True,
       example="https://idp.example.com/sso"),
    _s("ca", "a PEM file of the certificates that sign the responses (or caData)",
       example="/etc/portico/idp.pem"),
    _s("caData", "the same certificates inline, as base64 of the PEM"),
    _flag("insecureSkipSignatureValidation", "accept unsigned responses (tests only)"),
    _s("redirectURI", "Portico's assertion consumer URL, as the identity provider knows it", required=True,
       example=CALLBACK),
    _s("entityIssuer", "Portico's entity ID (the expected audience)", default="redirectURI"),
    _s("ssoIssuer", "the identity provider's entity ID: responses must name it"),
    _s("usernameAttr", "the attribute holding the username", required=True, example="name"),
    _s("emailAttr", "the attribute holding the email address", required=True, example="email"),
    _s("groupsAttr", "the attribute holding the groups", example="groups"),
    _s("groupsDelim", "split a single groups value on this string"),
    _list("allowedGroups", "only members of these groups may log in (needs groupsAttr)"),
    _flag("filterGroups", "pass on only the allowed groups"),
    _s("nameIDPolicyFormat", "the NameID format to ask for", default="persistent"),
)

OIDC = _schema(
    "oidc", "callback",
    _s("issuer", "the upstream provider's issuer URL", required=True, example="https://accounts.example.com"),
    _s("issuerAlias", "another issuer value its tokens may carry"),
    _CLIENT_ID,
    _secret("clientSecret", "the client secret this provider issued to Portico (empty: a public client)"),
    _REDIRECT_URI,
    _object("providerDiscoveryOverrides", "endpoints used instead of the discovered ones",
            _s("tokenURL"), _s("authURL"), _s("jwksURL"), _s("userInfoURL"),
            _s("deviceAuthURL", legacy="not used by Portico"), _s("endSessionURL")),
    _flag("basicAuthUnsupported", "send the client secret in the form body, not with basic auth",
          tristate=True, default="detected from the provider"),
    _list("scopes", "scopes to ask for besides openid", default="profile, email"),
    _list("hostedDomains", legacy="removed from Dex; use the google connector"),
    _list("rootCAs", "CA certificates to trust: PEM files, PEM text or base64"),
    _flag("insecureSkipEmailVerified", "treat every email as verified"),
    _flag("insecureEnableGroups", "pass on the groups claim"),
    _list("allowedGroups", "only members of these groups may log in"),
    _list("acrValues", "authentication context class references to ask for"),
    _flag("insecureSkipVerify", "do not verify the provider's TLS certificate"),
    _flag("getUserInfo", "also read the userinfo endpoint"),
    _s("userIDKey", "the claim used as the user ID", default="sub"),
    _s("userNameKey", "the claim used as the user name", default="name"),
    _s("promptType", "the prompt parameter sent upstream", default="consent"),
    _choice("pkceChallenge", ("S256", "plain"), "the PKCE method", default="the best the provider offers"),
    _flag("overrideClaimMapping", "use claimMapping even when the standard claims are present"),
    _object("claimMapping", "claims to read instead of the standard ones",
            _s("preferred_username"), _s("email"), _s("groups")),
    _object("claimModifications", "changes to the groups",
            _objects("newGroupFromClaims", "build a group from other claims",
                     _list("claims", "the claims joined into the group name", example=["org", "team"]),
                     _s("delimiter", "what joins them", example=":"),
                     _flag("clearDelimiter", "remove the delimiter from the claim values"),
                     _s("prefix", "put before the group name")),
            _object("filterGroupClaims", "keep only the matching groups",
                    _s("groupsFilter", "a regular expression", example="^team-")),
            _object("modifyGroupNames", "rename every group",
                    _s("prefix", "put before each group name"), _s("suffix", "put after each group name"))),
)

OAUTH = _schema(
    "oauth", "callback",
    _CLIENT_ID,
    _secret("clientSecret", "the client secret this provider issued to Portico"),
    _REDIRECT_URI,
    _s("tokenURL", "the provider's token endpoint", required=True, example="https://oauth.example.com/token"),
    _s("authorizationURL", "the provider's authorization endpoint", required=True,
       example="https://oauth.example.com/authorize"),
    _s("userInfoURL", "where the user's details are read", required=True,
       example="https://oauth.example.com/userinfo"),
    _list("scopes", "scopes to ask for"),
    _list("rootCAs", "CA certificates to trust: PEM files, PEM text or base64"),
    _flag("insecureSkipVerify", "do not verify the provider's TLS certificate"),
    _s("userIDKey", "the userinfo field used as the user ID", default="id"),
    _object("claimMapping", "userinfo fields to read",
            _s("userNameKey", default="user_name"), _s("preferredUsernameKey", default="preferred_username"),
            _s("groupsKey", default="groups"), _s("emailKey", default="email"),
            _s("emailVerifiedKey", default="email_verified")),
)

AUTHPROXY = _schema(
    "authproxy", "callback",
    _s("userIDHeader", "the header holding the user ID", default="X-Remote-User-Id"),
    _s("userHeader", "the header holding the user name (required on each login)", default="X-Remote-User"),
    _s("userNameHeader", "the header holding preferred_username", default="X-Remote-User-Name"),
    _s("emailHeader", "the header holding the email address", default="X-Remote-User-Email"),
    _s("groupHeader", "the header holding the groups", default="X-Remote-Group"),
    _s("groupHeaderSeparator", "what separates the groups in it", default=","),
    _list("staticGroups", "groups every user gets"),
)

GITHUB = _schema(
    "github", "callback", *_OAUTH_APP,
    _s("org", legacy="replaced by orgs"),
    _ORGS,
    _s("hostName", "GitHub Enterprise's host name", example="github.example.com"),
    _ROOT_CA_FILE,
    _choice("teamNameField", ("name", "slug", "both"), "how teams are named in groups", default="name"),
    _flag("loadAllGroups", "pass on every organisation and team, not only those of orgs"),
    _USE_LOGIN_AS_ID,
    _s("preferredEmailDomain", "pick the user's email in this domain"),
)

GITLAB = _schema(
    "gitlab", "callback",
    _s("baseURL", "the GitLab server", default="https://gitlab.com"),
    *_OAUTH_APP,
    _list("groups", "only members of these groups may log in"),
    _USE_LOGIN_AS_ID,
    _flag("getGroupsPermission", "add the user's role in each group (group:role)"),
    _flag("inheritedGroups", "include groups inherited from parent groups"),
    _s("rootCAData", "CA certificates to trust, as base64 of the PEM"),
)

GOOGLE = _schema(
    "google", "callback", *_OAUTH_APP,
    _list("scopes", "scopes to ask for besides openid", default="profile, email"),
    _list("hostedDomains", "only accounts of these Google Workspace domains"),
    _list("groups", "only members of these groups may log in (needs the directory)"),
    _s("serviceAccountFilePath", "the service account key file for reading groups"),
    _s("adminEmail", legacy='replaced by domainToAdminEmail: {"*": ...}'),
    Key("domainToAdminEmail", "map", "the admin each domain's groups are read as (domain=email)",
        example={"*": "admin@example.com"}),
    _flag("fetchTransitiveGroupMembership", "include groups of groups"),
    _s("promptType", "the prompt parameter sent to Google", default="consent"),
)

MICROSOFT = _schema(
    "microsoft", "callback",
    _CLIENT_ID,
    _secret("clientSecret", "the client secret (required unless clientAssertion is set)"),
    _s("clientAssertion", "a file holding a signed JWT, sent instead of the secret"),
    _REDIRECT_URI,
    _s("tenant", "common, organizations, consumers or a tenant ID", default="common"),
    _flag("onlySecurityGroups", "only security groups"),
    _list("groups", "only members of these groups may log in"),
    _choice("groupNameFormat", ("name", "id"), "how groups are named", default="name"),
    _flag("useGroupsAsWhitelist", "pass on only the groups listed in groups"),
    _flag("emailToLowercase", "lowercase the email address"),
    _flag("batchGroupLookups", "look groups up in batches"),
    _s("apiURL", "the login endpoint's base URL", default="https://login.microsoftonline.com"),
    _s("graphURL", "Microsoft Graph's base URL", default="https://graph.microsoft.com"),
    _s("promptType", "the prompt parameter sent upstream"),
    _s("domainHint", "the domain_hint parameter sent upstream"),
    _list("scopes", "scopes to ask for"),
    _choice("preferredUsernameField", ("name", "email", "mailNickname", "onPremisesSamAccountName"),
            "the field used as preferred_username"),
)

LINKEDIN = _schema("linkedin", "callback", *_OAUTH_APP)

BITBUCKET = _schema(
    "bitbucket-cloud", "callback", *_OAUTH_APP,
    _list("teams", "only members of these workspaces may log in"),
    _flag("includeTeamGroups", legacy="no effect: the API it used is gone"),
    _flag("getWorkspacePermissions", "add the user's permission in each workspace"),
)

OPENSHIFT = _schema(
    "openshift", "callback",
    _s("issuer", "the OpenShift API server URL", required=True, example="https://api.cluster.example.com:6443"),
    *_OAUTH_APP,
    _list("groups", "only members of these groups may log in"),
    _flag("insecureCA", "do not verify the cluster's TLS certificate"),
    _ROOT_CA_FILE,
)

GITEA = _schema(
    "gitea", "callback",
    _s("baseURL", "the Gitea server", default="https://gitea.com"),
    *_OAUTH_APP, _ORGS,
    _flag("loadAllGroups", "pass on every organisation and team, not only those of orgs"),
    _USE_LOGIN_AS_ID,
)

CROWD = _schema(
    "atlassian-crowd", "password",
    _s("baseURL", "the Crowd server", required=True, example="https://crowd.example.com/crowd"),
    _s("clientID", "the application name in Crowd", required=True, example="portico"),
    _secret("clientSecret", "the application password in Crowd", required=True, example="app-password"),
    _list("groups", "only members of these groups may log in"),
    _choice("preferredUsernameField", ("key", "name", "email"), "the field used as preferred_username"),
    _s("usernamePrompt", "the label of the username field on the login page", default="Username"),
)

KEYSTONE = _schema(
    "keystone", "password",
    _s("domain", "the Keystone domain (name or ID)", required=True, example="default"),
    _s("keystoneHost", "the Keystone server", required=True, example="https://keystone.example.com:5000"),
    _s("keystoneUsername", "an admin account used to refresh users and read groups"),
    _secret("keystonePassword", "the admin account's password"),
)

MOCK_CALLBACK = _schema("mockCallback", "callback", strict=False)
MOCK_PASSWORD = _schema(
    "mockPassword", "password",
    _s("username", "the one username accepted", required=True, example="kilgore"),
    _secret("password", "its password", required=True, example="trout"),
    strict=False,
)

SCHEMAS: Mapping[str, Schema] = MappingProxyType({s.type: s for s in (
    MOCK_CALLBACK, MOCK_PASSWORD, LDAP, SAML, OIDC, OAUTH, AUTHPROXY, GITHUB, GITLAB, GOOGLE, MICROSOFT,
    LINKEDIN, BITBUCKET, OPENSHIFT, GITEA, CROWD, KEYSTONE,
)})


def schema_of(type_: str) -> Schema | None:
    return SCHEMAS.get(type_)
