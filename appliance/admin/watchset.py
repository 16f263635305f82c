"""What a configuration depends on on disk: the files to watch and the fingerprint of their content."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from appliance.config.schema import Config

__all__ = ["WatchSet", "connector_files", "fingerprint", "symlink_hops", "watch_set"]

# Keys of connector configs that name a file (CA bundles, client certificates, keys, secret files).
# Matched on the key's last word, case-insensitively: rootCA, rootCAs, caFile, clientCert, keyFile...
_FILE_KEY_ENDINGS = ("ca", "cas", "cafile", "cert", "certs", "certfile", "key", "keyfile", "file", "path")
_FILE_SUFFIXES = (".pem", ".crt", ".cer", ".der", ".key", ".txt", ".secret", ".p12")


@dataclass(frozen=True)
class WatchSet:
    """Files (each symlink hop included) and folders whose changes may change the configuration."""

    files: tuple[str, ...]  # absolute paths as configured: the config file, TLS files, connector files
    folders: tuple[str, ...]  # watched recursively: the frontend folder

    def interesting(self) -> frozenset[str]:
        """Every path whose change matters: the files and each symlink on the way to their content."""
        paths: set[str] = set()
        for path in self.files:
            paths.update(symlink_hops(path))
        return frozenset(paths)

    def flat_dirs(self) -> tuple[str, ...]:
        """Folders to watch non-recursively (those that exist): where each path and symlink hop lives."""
        dirs = {os.path.dirname(p) for p in self.interesting()}
        return tuple(sorted(d for d in dirs if os.path.isdir(d)))

    def deep_dirs(self) -> tuple[str, ...]:
        return tuple(sorted(d for d in self.folders if os.path.isdir(d)))


def _looks_like_path(key: str, value: str) -> bool:
    if not value or "\n" in value or "://" in value or value.startswith("-----"):
        return False
    word = key.lower()
    if not any(word.endswith(ending) for ending in _FILE_KEY_ENDINGS):
        return False
    return value.startswith(("/", "./", "../")) or value.lower().endswith(_FILE_SUFFIXES)


def _walk(config: Any, key: str = "") -> Iterator[str]:
    if isinstance(config, Mapping):
        for name, value in config.items():
            yield from _walk(value, str(name))
    elif isinstance(config, list | tuple):
        for value in config:
            yield from _walk(value, key)
    elif isinstance(config, str) and _looks_like_path(key, config):
        yield config


def connector_files(config: Mapping[str, Any], base_dir: str) -> tuple[str, ...]:
    """The files a connector's config names, absolute (relative ones against `base_dir`)."""
    return tuple(sorted({os.path.normpath(os.path.join(base_dir, p)) for p in _walk(config)}))


def watch_set(config: Config, config_path: str, base_dir: str) -> WatchSet:
    files = {os.path.abspath(config_path)}
    for tls in (config.web.tls_cert, config.web.tls_key):
        if tls:
            files.add(os.path.normpath(os.path.join(base_dir, tls)))
    for connector in config.connectors:
        files.update(connector_files(connector.config, base_dir))
    folders = (os.path.normpath(os.path.join(base_dir, config.frontend.dir)),) if config.frontend.dir else ()
    return WatchSet(tuple(sorted(files)), folders)


def symlink_hops(path: str, limit: int = 40) -> list[str]:
    """`path`, every symlink met while resolving it, and where it finally lands.

    A Kubernetes ConfigMap mounts `config.yaml -> ..data/config.yaml` with `..data -> ..2024_01_01...`
    and swaps `..data` atomically: the change shows up on `..data`, not on `config.yaml`.
    """
    current = os.path.abspath(path)
    hops = [current]
    for _ in range(limit):
        parts = current.split(os.sep)
        prefix = os.sep
        moved = False
        for i, part in enumerate(parts[1:], start=1):
            prefix = os.path.join(prefix, part)
            if os.path.islink(prefix):
                try:
                    target = os.readlink(prefix)
                except OSError:
                    return hops
                current = os.path.normpath(os.path.join(os.path.dirname(prefix), target, *parts[i + 1:]))
                hops.extend([prefix, current])
                moved = True
                break
        if not moved:
            break
    return list(dict.fromkeys(hops))


def fingerprint(ws: WatchSet) -> str:
    """A digest of everything the configuration reads from disk: file contents (following symlinks),
    and for folders the names, sizes and modification times. Missing files count as missing."""
    digest = hashlib.sha256()
    for path in ws.files:
        digest.update(path.encode() + b"\0")
        try:
            with open(path, "rb") as handle:
                digest.update(hashlib.sha256(handle.read()).digest())
        except OSError as exc:
            digest.update(f"missing:{exc.errno}".encode())
    for folder in ws.folders:
        for root, dirs, names in os.walk(folder):
            dirs.sort()
            for name in sorted(names):
                full = os.path.join(root, name)
                try:
                    st = os.stat(full)
                except OSError:
                    continue
                digest.update(f"{full}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def files_digest(paths: tuple[str, ...]) -> str:
    """The fingerprint of a few files (a connector's CA bundle, say)."""
    return fingerprint(WatchSet(paths, ()))
