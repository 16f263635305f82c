"""`portico` command line: parses arguments and hands each subcommand to its module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from appliance import __version__

# Commands whose parsing needs none of the admin and kubectl-login parsers, which import the admin
# client's HTTP stack: `portico serve` starts without them (what it needs, it imports itself).
_LIGHT_COMMANDS = frozenset({"serve", "config", "hash-password", "version"})


def _parser(full: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portico",
        description="Portico, an OpenID Connect identity provider compatible with Dex.",
    )
    parser.add_argument("--version", action="version", version=f"portico {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the identity provider")
    serve.add_argument(
        "config", nargs="?", help="config file (Dex format); without it, a development default is used"
    )
    serve.add_argument("--admin-socket", default=None,
                       help="admin API socket (default: $PORTICO_ADMIN_SOCKET, the config's admin.socket, "
                            "$RUNTIME_DIRECTORY/admin.sock, /run/portico/admin.sock as root, "
                            "else $XDG_RUNTIME_DIR/portico/admin.sock)")
    serve.add_argument("--no-watch", action="store_true",
                       help="do not watch the config files (reload on SIGHUP or `portico reload` only)")

    config = sub.add_parser("config", help="work with configuration files")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION")
    check = config_sub.add_parser("check", help="validate a config file without starting anything")
    check.add_argument("file")

    hashp = sub.add_parser("hash-password", help="print a bcrypt hash for staticPasswords")
    hashp.add_argument("--cost", type=int, default=10, help="bcrypt cost, 10 to 16 (default 10)")

    sub.add_parser("version", help="print the version")
    if not full:
        return parser

    from appliance.cli.admin_cmds import add_admin_parsers

    add_admin_parsers(sub)
    tui = sub.add_parser("tui", help="the terminal console (talks to a running server)")
    tui.add_argument("--socket", default=None, help="admin socket of the server")
    tui.add_argument("--config", metavar="FILE", default=None,
                     help="the server's config file: use its admin.socket (when --socket is not given)")
    init = sub.add_parser("init", help="write a first config.yaml with a wizard")
    init.add_argument("--output", default="config.yaml", help="where to write it (default: config.yaml)")

    from appliance.kubelogin.cli import add_arguments as add_kubelogin_arguments

    kubelogin = sub.add_parser(
        "kubectl-login", help="kubectl credential plugin: log in, print an ExecCredential"
    )
    add_kubelogin_arguments(kubelogin)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = _parser(full=not words or words[0] not in _LIGHT_COMMANDS)
    args = parser.parse_args(words)
    if args.command == "serve":
        from appliance.cli.serve import run_serve

        return run_serve(args.config, admin_socket=args.admin_socket, watch=not args.no_watch)
    if args.command == "config":
        if args.config_command != "check":
            parser.parse_args(["config", "--help"])
            return 2
        from appliance.config.load import check_config_file

        code, text = check_config_file(args.file)
        print(text, file=sys.stdout if code == 0 else sys.stderr)
        return code
    if args.command == "hash-password":
        from appliance.cli.passwords import run_hash_password

        return run_hash_password(args.cost)
    from appliance.cli.admin_cmds import COMMANDS, run_admin

    if args.command in COMMANDS:
        return run_admin(args)
    if args.command in ("tui", "init"):
        from appliance.admin.client import AdminUnavailable
        from appliance.cli.admin_cmds import socket_of
        from appliance.cli.console import run_console

        try:
            socket = socket_of(getattr(args, "socket", None), getattr(args, "config", None))
        except AdminUnavailable as exc:
            print(f"portico: {exc}", file=sys.stderr)
            return 3
        return run_console(args.command, socket, getattr(args, "output", ""))
    if args.command == "kubectl-login":
        from appliance.kubelogin.cli import run as run_kubelogin

        return run_kubelogin(args)
    if args.command == "version":
        from appliance.cli.version import version_text

        print(version_text())
        return 0
    parser.print_help()
    return 2
