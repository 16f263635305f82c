"""`portico hash-password`: a bcrypt hash for staticPasswords, from a prompt or standard input."""

from __future__ import annotations

import getpass
import sys

import bcrypt


def run_hash_password(cost: int) -> int:
    if not 10 <= cost <= 16:
        print("error: --cost must be between 10 and 16 (Dex accepts no other)", file=sys.stderr)
        return 2
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("error: the two passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("error: empty password", file=sys.stderr)
        return 1
    if len(password.encode()) > 72:
        print("error: bcrypt uses at most 72 bytes of a password", file=sys.stderr)
        return 1
    print(bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode())
    return 0
