"""Hypothesis strategies for malformed requests to the endpoints of fuzz_targets, and the checks every
answer must pass (no 5xx, JSON errors where JSON is due, no reflected markup, no redirect off-site)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

from fuzz_targets import GRANTS, Live, Pairs, Target, basic
from hypothesis import strategies as st
from security_support import APP_REDIRECT, LOOPBACK_REDIRECT, SECRETS, XSS

# Hosts a redirect may point at: the issuer's own, and those of the registered redirect URIs.
ALLOWED_REDIRECT_HOSTS = frozenset({"", "127.0.0.1", "localhost", "::1", "app.example", "other.example",
                                    "xss.example"})
# Parts of XSS that must never come back as markup (escaped, they are harmless text).
XSS_MARKERS = ("<script>alert(1)", "<img src=x", "'><")
EXTRA_PARAMS = ("next", "return_to", "redirect", "url", "continue", "goto", "", "a[]", "__proto__")
INTERESTING = (
    "", " ", "%", "%zz", "%00", "\x00", "\r\n", "null", "[]", "{}", "0", "-1", "99999999999999999999",
    "1e309", "NaN", "true", "app", "native", "native-reg", "svc", "other", "xss", "mock", "local", "nope",
    APP_REDIRECT, LOOPBACK_REDIRECT, "urn:ietf:wg:oauth:2.0:oob", "/device/callback", "http://localhost:1/cb",
    "https://evil.example/", "//evil.example", "javascript:alert(1)", "code", "token", "id_token",
    "code id_token token", "token code", "openid", "openid offline_access",
    "openid audience:server:client_id:other", "openid federated:id groups", "S256", "plain", "s256", "none",
    "login", "consent", "none login", "approve", "deny", "on", XSS, "../../../../etc/passwd",
    "eyJhbGciOiJub25lIn0.e30.", "a.b.c", "...", "e30.e30.e30", "Og", "CgRpZGlkEgR0b2tlbg",
    "urn:ietf:params:oauth:token-type:id_token", "urn:ietf:params:oauth:token-type:access_token", "BCDF-GHJK",
    "bcdfghjk", "\u202egnp.exe", "é", "\U0001f600", "\ufeff", "a" * 300, *GRANTS,
)
# Per field, the values a lax parser is most likely to mishandle; a replaced field draws from these three
# times in four (random garbage alone almost never hits them).
FIELD_TRAPS: dict[str, tuple[str, ...]] = {
    # Full-width digits written as escapes: ruff (RUF001) rightly flags look-alikes in source.
    "max_age": ("²", "١٢", "\uff11\uff12", "99999999999999999999", "1" * 400, "-1", "1.5", " 1", "0x10",
                "1_000", "0"),
    "redirect_uri": (APP_REDIRECT + "/", APP_REDIRECT + "x", APP_REDIRECT.upper(), "https://app.example@evil.example/",
                     "http://evil.example\\@localhost/cb", "http://localhost:0/cb", "http://[::1]:99999/",
                     "http://localhost:1/cb#x", "http://127.0.0.1.evil.example/", "/device/callback/.."),
    "post_logout_redirect_uri": ("https://app.example/bye/", "https://app.example/BYE", "https://evil.example/",
                                 "https://app.example/bye?x=1", "https://app.example/bye#x"),
    "prompt": ("none", "login", "consent", "select_account", "none consent", "login login", "NONE", "none "),
    "response_type": ("code", "id_token", "token", "code token", "id_token token", "code id_token token",
                      "code code", "CODE", " code", "token id_token"),
    "code_challenge_method": ("S256", "plain", "s256", "PLAIN", "S512", "", "none"),
    "code_challenge": ("", "a", "a" * 43, "a" * 129, "+/=", "=" * 43),
    "scope": ("openid", "openid offline_access", "offline_access", "openid openid", "openid\tgroups",
              "openid audience:server:client_id:", "openid audience:server:client_id:app",
              "openid audience:server:client_id:native", "openid federated:id"),
    "user_code": ("bcdf-ghjk", "BCDFGHJK", "BCDF GHJK", "BCDF--GHJK", "BCDF-GHJK-",
                  "\uff22\uff23\uff24\uff26-GHJK", "ß" * 8),
    "requested_token_type": ("urn:ietf:params:oauth:token-type:id_token",
                             "urn:ietf:params:oauth:token-type:access_token",
                             "urn:ietf:params:oauth:token-type:refresh_token", "urn:x"),
    "subject_token_type": ("urn:ietf:params:oauth:token-type:access_token",
                           "urn:ietf:params:oauth:token-type:jwt"),
}
_ASCII_PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
_CHAR = st.characters(codec="utf-8")  # anything UTF-8 carries (no lone surrogates: no URL or form can)
_TEXT = st.text(_CHAR, max_size=60)
_LONG = st.builds(lambda char, count: char * count, st.sampled_from("a%./<\\é"), st.integers(1_000, 20_000))
VALUE = st.one_of(
    st.sampled_from(INTERESTING), st.sampled_from(INTERESTING), _TEXT, st.integers().map(str),
    st.binary(max_size=40).map(lambda raw: raw.decode("latin-1")), _LONG,
)
_SEGMENT_GARBAGE = st.one_of(
    st.sampled_from(["local", "mock", "nope", "..", "%2e%2e", "..%2f..%2fetc%2fpasswd", "css/x.css",
                     "img/favicon.svg", "theme.css", "../templates/base.html", "%00", "a" * 500,
                     "..%2f..%2f..%2fappliance%2fweb%2fapp.py", "css/../../templates/base.html"]),
    _TEXT.filter(bool).map(lambda text: quote(text, safe="")),
)
_RAW_QUERY = st.one_of(
    st.text(_ASCII_PRINTABLE.filter(lambda ch: ch != "#"), max_size=80),
    st.sampled_from(["%ff%fe=%c0%af", "a=%zz&b=%", "&&&==&=", "a" * 5000 + "=1", "client_id=app&client_id=x",
                     "state=%E2%80%AE", "%00=%00", ";;;", "a=1;b=2"]),
)
_FORM = "application/x-www-form-urlencoded"
_CONTENT_TYPES = st.sampled_from((
    _FORM, f"{_FORM}; charset=utf-8", f"{_FORM}; charset=latin-1", f"{_FORM}; charset=nonexistent-charset",
    f"{_FORM}; charset=utf-16", "multipart/form-data; boundary=xyz", "multipart/form-data",
    "application/json", "text/plain", "", "*/*", "application/x-www-form-urlencoded;;;=",
))
_RAW_BODY = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"a=%ff%fe", b"=&=&", b"grant_type=refresh_token&refresh_token=%", b"\xff\xfe\x00",
                     b"a=" + b"x" * 70_000, b"--xyz\r\n", b'{"grant_type": "password"}']),
    st.builds(lambda name, value: (b'--xyz\r\nContent-Disposition: form-data; name="' + name.encode() +
                                   b'"\r\n\r\n' + value + b"\r\n--xyz--\r\n"),
              st.sampled_from(["grant_type", "state", "csrf_token", 'x"y']), st.binary(max_size=60)),
)
_HEADER_TEXT = st.text(_ASCII_PRINTABLE, max_size=80)
_COOKIE_TEXT = _HEADER_TEXT.filter(lambda text: ";" not in text)
AUTHORIZATION = st.one_of(
    st.none(), st.none(),
    st.sampled_from([basic("app", SECRETS["app"]), basic("svc", SECRETS["svc"]), basic("app", "wrong"),
                     basic("native", ""), basic("%zz", "%"), basic("", ""), "Basic", "Basic !!!",
                     "Basic Og==",
                     "Bearer", "Bearer ", "Bearer a.b.c", "Bearer eyJhbGciOiJub25lIn0.e30.", "bearer  x ",
                     "Digest x", "Basic " + "A" * 5000]),
    _HEADER_TEXT, _HEADER_TEXT.map(lambda text: "Bearer " + text),
    st.tuples(_HEADER_TEXT, _HEADER_TEXT).map(lambda pair: basic(*pair)),
)
_ORIGIN = st.sampled_from(["https://evil.example", "null", "https://app.example"])


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    path: str  # under the issuer, percent-encoded as sent
    query: str  # raw ASCII query string
    body: bytes | None
    headers: tuple[tuple[str, str], ...]

    def describe(self) -> str:
        body = self.body[:300] if self.body is not None else None
        return f"{self.method} {self.path}?{self.query[:300]} body={body!r} headers={self.headers}"


# Strategies are built once per target or value set: building them per draw costs more than drawing.
@functools.cache
def _segment(target: Target) -> st.SearchStrategy[str]:
    if not target.segments:
        return _SEGMENT_GARBAGE
    good = st.sampled_from(target.segments)
    return st.one_of(good, good, _SEGMENT_GARBAGE)


@functools.cache
def _names(target: Target) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(target.params or ("x",)), st.sampled_from(EXTRA_PARAMS), _TEXT)


@functools.cache
def _values(live_values: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.one_of(VALUE, VALUE, st.sampled_from(live_values))


@functools.cache
def cookies(csrf_cookie: str, session: str = "") -> st.SearchStrategy[str | None]:
    """A Cookie header: none, garbage, a planted session, the CSRF cookie the forms' token is for, and
    (when given) a live session's cookie, alone or with the CSRF one."""
    matching = st.just(f"portico_csrf={csrf_cookie}")
    options = [
        st.none(), matching, matching, _COOKIE_TEXT.map(lambda text: f"portico_session={text}"),
        _COOKIE_TEXT.map(lambda text: f"portico_csrf={text}"),
        st.sampled_from(["portico_session=a.b", "portico_session=" + "x" * 300, "portico_session=.", "=;;=",
                         "portico_csrf=" + "A" * 43, "__Host-portico_session=x.y"]),
    ]
    if session:  # half the requests carry the live session
        both = st.just(f"portico_session={session}; portico_csrf={csrf_cookie}")
        return st.one_of(st.one_of(both, st.just(f"portico_session={session}")), st.one_of(options))
    return st.one_of(options)


def _mutate(draw: st.DrawFn, value: str) -> str:
    """A good value, slightly wrong: cut, extended, case-flipped, one character changed."""
    kind = draw(st.integers(0, 3))
    at = draw(st.integers(0, max(len(value) - 1, 0)))
    if kind == 0:
        return value[:at]
    if kind == 1:
        tail: str = draw(VALUE)
        return value + tail
    if kind == 2:
        return value.swapcase()
    return value[:at] + draw(_CHAR) + value[at + 1:]


def _pairs(draw: st.DrawFn, target: Target, live: Live) -> Pairs:
    """The target's good request with a few fields (usually one to three, sometimes all) replaced,
    mutated, dropped or repeated, plus random extra fields, sometimes in another order. Breaking few
    fields at a time is what lets a request pass the early checks and reach the later ones."""
    values = _values(tuple(sorted(live.values())))
    template = target.template(live)
    if draw(st.integers(0, 7)) == 0:
        broken = set(range(len(template)))
    else:
        broken = draw(st.sets(st.integers(0, max(len(template) - 1, 0)), max_size=3))
    out: Pairs = []
    for index, (key, value) in enumerate(template):
        action = draw(st.integers(0, 7)) if index in broken else -1
        if action < 0:
            out.append((key, value))
        elif action < 3:
            traps = FIELD_TRAPS.get(key)
            use_trap: bool = draw(st.integers(0, 3)) > 0
            out.append((key, draw(st.sampled_from(traps)) if traps and use_trap else draw(values)))
        elif action < 5:
            out.append((key, _mutate(draw, value)))
        elif action == 5:
            continue
        else:
            out += [(key, value), (key, draw(values))]
    out += draw(st.lists(st.tuples(_names(target), values), max_size=4))
    if draw(st.integers(0, 4)) == 0:
        out = draw(st.permutations(out))
    return out


def _body(draw: st.DrawFn, pairs: Pairs) -> tuple[bytes, str]:
    kind = draw(st.integers(0, 3))
    if kind < 2:
        return urlencode(pairs).encode(), _FORM
    if kind == 2:
        return urlencode(pairs).encode(), draw(_CONTENT_TYPES)
    return draw(_RAW_BODY), draw(_CONTENT_TYPES)


@st.composite
def fuzz_request(draw: st.DrawFn, target: Target, live: Live) -> FuzzRequest:
    """One malformed request to `target`, most of them a good request with some parts broken."""
    method = draw(st.sampled_from(target.methods))
    path = target.path.replace("{seg}", draw(_segment(target)))
    live = {**live, "grant": draw(st.sampled_from(target.grants))}
    pairs = _pairs(draw, target, live)
    query = urlencode(pairs) if draw(st.integers(0, 2)) else draw(_RAW_QUERY)
    headers: list[tuple[str, str]] = []
    body: bytes | None = None
    if method == "POST":
        body, content_type = _body(draw, [(k, v) for k, v in pairs if k not in target.query_fields])
        if content_type:
            headers.append(("Content-Type", content_type))
        if draw(st.integers(0, 3)):  # most POSTs carry their fields in the body
            query = urlencode([(k, v) for k, v in pairs if k in target.query_fields])
    authorization = draw(AUTHORIZATION)
    use_good_auth: bool = draw(st.booleans())
    if target.auth and use_good_auth:
        authorization = draw(st.sampled_from(target.auth))
    if target.name == "userinfo" and draw(st.booleans()):
        token = live["access"] if draw(st.booleans()) else _mutate(draw, live["access"])
        # A header carries printable ASCII only; anything else the client itself refuses to send.
        authorization = "Bearer " + "".join(ch for ch in token if " " <= ch <= "~")
    if authorization is not None:
        headers.append(("Authorization", authorization))
    cookie = draw(cookies(live["csrf_cookie"], live.get("session", "")))
    if cookie is not None:
        headers.append(("Cookie", cookie))
    if draw(st.integers(0, 9)) == 0:
        headers.append(("Origin", draw(_ORIGIN)))
    return FuzzRequest(method, path, query, body, tuple(headers))


def answer_problems(target: Target, status: int, content_type: str, body: str,
                    location: str | None) -> list[str]:
    """Everything wrong with one answer; empty when it is acceptable."""
    problems: list[str] = []
    if status >= 500:
        problems.append(f"status {status}")
    if "Traceback (most recent call last)" in body:
        problems.append("a traceback in the body")
    if "text/html" in content_type:
        problems += [f"raw {marker!r} in the page" for marker in XSS_MARKERS if marker in body]
    if target.json and status >= 400 and status != 405:
        if "application/json" not in content_type:
            problems.append(f"error answered as {content_type!r}, not JSON")
        else:
            try:
                error = json.loads(body).get("error")
            except (ValueError, AttributeError):
                error = None
            if not isinstance(error, str) or not error:
                problems.append(f"JSON error without an error code: {body[:200]!r}")
    if location is not None:
        problems += _redirect_problems(location)
    return problems


def _redirect_problems(location: str) -> list[str]:
    # Read the URL as a browser does (WHATWG): "\" ends the host in http(s) URLs, as "/" does.
    try:
        parts = urlsplit(location.replace("\\", "/"))
        host = parts.hostname or ""
    except ValueError:
        return [f"unparsable Location {location!r}"]
    if parts.scheme not in ("", "http", "https") or host not in ALLOWED_REDIRECT_HOSTS:
        return [f"redirect off the allowed hosts: {location!r}"]
    if location.startswith("//"):
        return [f"protocol-relative redirect: {location!r}"]
    return []
