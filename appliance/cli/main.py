"""`portico` command line: parses arguments and hands each subcommand to its module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from appliance import __version__


def _parser() -> argparse.ArgumentParser:
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

    config = sub.add_parser("config", help="work with configuration files")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION")
    check = config_sub.add_parser("check", help="validate a config file without starting anything")
    check.add_argument("file")

    hashp = sub.add_parser("hash-password", help="print a bcrypt hash for staticPasswords")
    hashp.add_argument("--cost", type=int, default=10, help="bcrypt cost, 10 to 16 (default 10)")

    sub.add_parser("version", help="print the version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        from appliance.cli.serve import run_serve

        return run_serve(args.config)
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
    if args.command == "version":
        from appliance.cli.version import version_text

        print(version_text())
        return 0
    parser.print_help()
    return 2
