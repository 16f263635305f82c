"""`portico clients|users|keys|sessions|connectors|lockouts|reload|audit`: admin API calls from the shell."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from appliance.admin.client import AdminAPIError, AdminClient, AdminUnavailable

__all__ = ["COMMANDS", "add_admin_parsers", "run_admin"]

COMMANDS = ("clients", "users", "keys", "sessions", "connectors", "lockouts", "reload", "audit")


def _common() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--socket",
                        help="admin socket (default: $PORTICO_ADMIN_SOCKET or /run/portico/admin.sock)")
    parser.add_argument("--config", metavar="FILE",
                        help="the server's config file: use its admin.socket (when --socket is not given)")
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")
    return parser


class _Sub:
    """A subparsers action whose every parser also takes --socket and --json."""

    def __init__(self, sub: Any, common: argparse.ArgumentParser) -> None:
        self._sub, self._common = sub, common

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._sub.add_parser(name, parents=[self._common], **kwargs)
        return parser


def add_admin_parsers(top: Any) -> None:
    """Adds the admin subcommands to the `portico` parser's subparsers."""
    common = _common()
    sub = top  # the command groups; only the parsers that run something take --socket and --json

    def actions(parser: argparse.ArgumentParser) -> _Sub:
        return _Sub(parser.add_subparsers(dest="action", metavar="ACTION", required=True), common)
    clients = sub.add_parser("clients", help="OAuth2 clients (list, add, rm)")
    c = actions(clients)
    c.add_parser("list", help="every client, from the config file and from storage")
    add = c.add_parser("add", help="create a client; its secret is printed once")
    add.add_argument("--id", default="", help="client id (default: generated)")
    add.add_argument("--name", default="")
    add.add_argument("--redirect-uri", action="append", default=[], dest="redirect_uris")
    add.add_argument("--trusted-peer", action="append", default=[], dest="trusted_peers")
    add.add_argument("--public", action="store_true", help="a public client (no secret)")
    rm = c.add_parser("rm", help="delete a client created through the API")
    rm.add_argument("id")

    users = sub.add_parser("users",
                           help="local password database (list, add, passwd, groups, rm, totp-reset)")
    u = actions(users)
    u.add_parser("list")
    uadd = u.add_parser("add", help="create a user; the password is read from stdin or prompted")
    uadd.add_argument("email")
    uadd.add_argument("--username", default="")
    uadd.add_argument("--group", action="append", default=[], dest="groups")
    upw = u.add_parser("passwd", help="reset a user's password (read from stdin or prompted)")
    upw.add_argument("email")
    ugr = u.add_parser("groups", help="set a user's groups (replaces them)")
    ugr.add_argument("email")
    ugr.add_argument("groups", nargs="*")
    urm = u.add_parser("rm")
    urm.add_argument("email")
    utr = u.add_parser("totp-reset",
                       help="forget a user's TOTP second factor: they enrol again at their next login")
    utr.add_argument("email")

    keys = sub.add_parser("keys", help="signing keys (list, rotate)")
    k = actions(keys)
    k.add_parser("list")
    k.add_parser("rotate", help="rotate the signing key now")

    sessions = sub.add_parser("sessions", help="refresh tokens and offline sessions (list, revoke)")
    s = actions(sessions)
    sl = s.add_parser("list")
    sl.add_argument("--user", default="", help="user id, email or username")
    sr = s.add_parser("revoke", help="revoke one refresh token, or every token of --user")
    sr.add_argument("id", nargs="?", default="")
    sr.add_argument("--user", default="")

    conns = sub.add_parser("connectors", help="connectors (list, test)")
    n = actions(conns)
    n.add_parser("list")
    nt = n.add_parser("test", help="run a real check (LDAP: bind and look up the base DNs)")
    nt.add_argument("id")
    nt.add_argument("--username", default="", help="test login (the password is read from stdin)")

    _add_lockouts(actions(sub.add_parser("lockouts", help="brute-force lockouts (list, clear)")))

    leaves = _Sub(top, common)
    leaves.add_parser("reload", help="reload the configuration now")
    audit = leaves.add_parser("audit", help="the admin audit log")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--filter", default="")


def _password(prompt: str) -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("again: ") != first:
            raise SystemExit("portico: the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    if value in (None, ""):
        return "-"
    return str(value)


def _call(args: argparse.Namespace, client: AdminClient) -> tuple[Any, Callable[[Any], str]]:
    cmd, action = args.command, getattr(args, "action", "")
    if cmd == "clients":
        if action == "list":
            return client.get("/v1/clients"), lambda r: _table(r, ("id", "name", "source", "public",
                                                                   "redirect_uris"))
        if action == "add":
            body = {"id": args.id, "name": args.name, "redirect_uris": args.redirect_uris,
                    "trusted_peers": args.trusted_peers, "public": args.public}
            return client.post("/v1/clients", body), lambda r: (
                f"client {r['id']} created\n" + (f"secret: {r['secret']}\n(shown once: store it now)"
                                                 if r.get("secret") else "public client: no secret"))
        return client.delete(client.item("clients", args.id)), lambda r: f"client {r['deleted']} deleted"
    if cmd == "users":
        if action == "list":
            return client.get("/v1/users"), lambda r: _table(
                [{**u, "totp": "enrolled" if u.get("totp") else ""} for u in r],
                ("email", "username", "groups", "source", "totp"))
        if action == "add":
            body = {"email": args.email, "username": args.username, "groups": args.groups,
                    "password": _password(f"password for {args.email}: ")}
            return client.post("/v1/users", body), lambda r: f"user {r['email']} created (id {r['user_id']})"
        if action == "passwd":
            body = {"password": _password(f"new password for {args.email}: ")}
            return (client.post(client.item("users", args.email, "password"), body),
                    lambda r: f"password of {r['email']} changed")
        if action == "groups":
            return (client.patch(client.item("users", args.email), {"groups": args.groups}),
                    lambda r: f"groups of {r['email']}: {', '.join(r['groups']) or 'none'}")
        if action == "totp-reset":
            return client.post(client.item("users", args.email, "totp", "reset")), lambda r: (
                f"TOTP of {r['email']} reset: a new enrolment at the next login" if r["reset"]
                else f"{r['email']} had no TOTP enrolment: nothing to reset")
        return client.delete(client.item("users", args.email)), lambda r: f"user {r['deleted']} deleted"
    if cmd == "keys":
        if action == "list":
            return client.get("/v1/keys"), _keys_text
        return client.post("/v1/keys/rotate"), lambda r: f"rotated: {r['previous_kid']} -> {r['current_kid']}"
    if cmd == "sessions":
        if action == "list":
            return client.get("/v1/sessions", user=args.user), lambda r: _table(
                r["refresh_tokens"], ("id", "user_id", "email", "client_id", "connector_id", "last_used"))
        if args.id:
            return client.delete(client.item("sessions", args.id)), lambda r: f"revoked {r['revoked'][0]}"
        if not args.user:
            raise SystemExit("portico: give a refresh token id or --user")
        return (client.post("/v1/sessions/revoke", {"user": args.user}),
                lambda r: f"revoked {len(r['revoked'])} refresh token(s) of {args.user}")
    if cmd == "connectors":
        if action == "list":
            return client.get("/v1/connectors"), lambda r: _table(r, ("id", "type", "name", "source", "state",
                                                                      "message"))
        body = {"username": args.username, "password": _password("test password: ") if args.username else ""}
        return (client.post(client.item("connectors", args.id, "test"), body),
                lambda r: ("ok: " if r["ok"] else "FAILED: ") + r["message"])
    if cmd == "lockouts":
        return _lockouts(args, client)
    if cmd == "reload":
        return client.post("/v1/reload"), _reload_text
    return client.get("/v1/audit", limit=args.limit, q=args.filter), lambda r: _table(
        r, ("time", "uid", "pid", "action", "target", "result"))


def _add_lockouts(sub: _Sub) -> None:
    ll = sub.add_parser("list", help="locked accounts and client addresses")
    ll.add_argument("--all", action="store_true", dest="everything",
                    help="also the failure counters that have not led to a lockout")
    lc = sub.add_parser("clear", help="lift a lockout: by id (see list), --user [--connector], --ip, --all")
    lc.add_argument("id", nargs="?", default="")
    lc.add_argument("--user", default="", help="username as typed at the login (any case)")
    lc.add_argument("--connector", default="", help="only this connector's account (default: every one)")
    lc.add_argument("--ip", default="", help="a client address (IPv6: its /64)")
    lc.add_argument("--all", action="store_true", dest="everything", help="every lockout and counter")


def _lockouts(args: argparse.Namespace, client: AdminClient) -> tuple[Any, Callable[[Any], str]]:
    if args.action == "list":
        return client.get("/v1/lockouts", all="1" if args.everything else ""), lambda r: _table(
            [{**x, "locked_until": x["locked_until"][:19].replace("T", " ")} for x in r],
            ("id", "kind", "subject", "connector_id", "failures", "locked_until"))
    if args.id:
        answer = client.delete(client.item("lockouts", args.id))
    elif args.user or args.ip or args.everything:
        body: dict[str, Any] = {"user": args.user, "connector": args.connector, "ip": args.ip}
        if args.everything:
            body["all"] = True
        answer = client.post("/v1/lockouts/clear", body)
    else:
        raise SystemExit("portico: give a lockout id, --user, --ip or --all")
    return answer, lambda r: "\n".join(f"cleared {x}" for x in r["cleared"]) or "nothing to clear"


def _keys_text(r: dict[str, Any]) -> str:
    lines = [f"algorithm      {r['algorithm']}", f"current key    {r['current_kid']} (age {r['age_s']} s)",
             f"next rotation  {r['next_rotation']}"]
    lines += [f"verifies       {v['kid']} until {v['expiry']}" for v in r["verification_keys"]]
    return "\n".join(lines)


def _reload_text(r: dict[str, Any]) -> str:
    lines = [f"{r['result']}: {r['message']} (generation {r['generation']})"]
    lines += [f"  change: {c}" for c in r["changes"]]
    lines += [f"  {p['severity']}: line {p['line']}: {p['path']}: {p['message']}" for p in r["problems"]]
    if r["restart_required"]:
        lines.append("  needs a restart: " + ", ".join(r["restart_required"]))
    return "\n".join(lines)


def socket_of(socket: str | None, config_path: str | None) -> str | None:
    """The socket to call: --socket, else the admin.socket of the config file given with --config
    (resolved as the server resolves it, $PORTICO_ADMIN_SOCKET first), else None (the default)."""
    if socket or not config_path:
        return socket
    from appliance.admin.client import server_socket_path
    from appliance.config.load import load_config

    config, problems = load_config(config_path)
    if config is None:
        first = next((str(p) for p in problems if p.severity == "error"), "unreadable")
        raise AdminUnavailable(f"cannot read the admin socket from {config_path}: {first}")
    return server_socket_path(config.admin.socket) if config.admin.socket else None


def run_admin(args: argparse.Namespace) -> int:
    try:
        client = AdminClient(socket_of(args.socket, args.config))
    except AdminUnavailable as exc:
        print(f"portico: {exc}", file=sys.stderr)
        return 3
    try:
        result, render = _call(args, client)
    except AdminUnavailable as exc:
        print(f"portico: {exc}", file=sys.stderr)
        return 3
    except AdminAPIError as exc:
        print(f"portico: {exc.message} ({exc.code}, HTTP {exc.status})", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else render(result))
    if args.command == "reload" and isinstance(result, dict) and result.get("result") == "rejected":
        return 1
    return 0
