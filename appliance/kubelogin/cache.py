"""The kubectl plugin's token cache: one 0600 JSON file per issuer, client and scopes, under a lock."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TextIO

from appliance.kubelogin.provider import Settings, Tokens

FILE_MODE = 0o600
DIR_MODE = 0o700


def default_cache_dir(env: Mapping[str, str]) -> Path:
    """$XDG_CACHE_HOME/portico, else ~/.kube/cache/portico (beside kubectl's own caches)."""
    xdg = env.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore a relative path
        return Path(xdg) / "portico"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".kube" / "cache" / "portico"


def cache_key(settings: Settings) -> str:
    """Issuer, client and scopes: another scope set is another login, so it gets its own file."""
    material = json.dumps([settings.issuer, settings.client_id, sorted(settings.scopes)])
    return hashlib.sha256(material.encode()).hexdigest()


class TokenCache:
    """Reads and writes one entry; `locked()` keeps two kubectl calls from logging in at once."""

    def __init__(self, directory: Path, settings: Settings, warn: TextIO = sys.stderr) -> None:
        self.directory = directory
        self.settings = settings
        key = cache_key(settings)
        self.path = directory / f"{key}.json"
        self.lock_path = directory / f"{key}.lock"
        self._warn = warn

    def _ensure_dir(self) -> None:
        self.directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock for the whole check-refresh-login sequence; the OS drops it if we die."""
        self._ensure_dir()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def load(self) -> Tokens | None:
        """The cached tokens, or None when there are none, they are for someone else, or the file is not
        private to this user (a file others can read or write is not trusted, and is said so)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            print(f"portico kubectl-login: ignoring the token cache {self.path}: {exc.strerror}",
                  file=self._warn)
            return None
        with os.fdopen(fd, "r", encoding="utf-8") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
                print(f"portico kubectl-login: ignoring the token cache {self.path}: it must be a regular "
                      f"file owned by this user with mode 0600", file=self._warn)
                return None
            try:
                data = json.load(handle)
            except (ValueError, UnicodeDecodeError):
                return None
        return self._parse(data)

    def _parse(self, data: object) -> Tokens | None:
        if not isinstance(data, dict):
            return None
        if data.get("issuer") != self.settings.issuer or data.get("client_id") != self.settings.client_id:
            return None
        id_token, refresh, expiry, issued = (data.get(k) for k in ("id_token", "refresh_token", "expiry",
                                                                    "issued_at"))
        if not isinstance(id_token, str) or not isinstance(refresh, str):
            return None
        if not isinstance(expiry, int) or not isinstance(issued, int):
            return None
        return Tokens(id_token=id_token, refresh_token=refresh, expiry=expiry, issued_at=issued)

    def store(self, tokens: Tokens) -> None:
        """Written to a new 0600 file and renamed over the old one, so a reader never sees half a file."""
        self._ensure_dir()
        body = json.dumps({
            "issuer": self.settings.issuer,
            "client_id": self.settings.client_id,
            "scopes": list(self.settings.scopes),
            "id_token": tokens.id_token,
            "refresh_token": tokens.refresh_token,
            "expiry": tokens.expiry,
            "issued_at": tokens.issued_at,
        })
        tmp = self.directory / f".{self.path.name}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), FILE_MODE)  # whatever the umask said
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
