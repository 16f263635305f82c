"""KeyManager: rotation over compare-and-swap storage, the JWKS, signing and verification."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from appliance.clock import FrozenClock
from appliance.keys.errors import InvalidToken, KeysNotLoaded
from appliance.keys.keyset import VERIFIED_CACHE_SIZE, _Entry
from appliance.keys.manager import KeyManager
from appliance.store.models import Keys

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


class FakeKeyStore:
    """Test double of Storage.get_keys/update_keys: versioned compare-and-swap with retries.

    `rendezvous=n` makes the first n concurrent update_keys calls all read before any writes, so a
    race is forced rather than hoped for.
    """

    def __init__(self, rendezvous: int = 0) -> None:
        self.keys = Keys()
        self.version = 0
        self.conflicts = 0
        self._rendezvous = rendezvous
        self._arrived = 0
        self._all_read = asyncio.Event()

    def rearm(self, rendezvous: int) -> None:
        self._rendezvous, self._arrived, self._all_read = rendezvous, 0, asyncio.Event()

    async def get_keys(self) -> Keys:
        await asyncio.sleep(0)
        return self.keys

    async def update_keys(self, updater: Callable[[Keys], Keys]) -> Keys:
        while True:
            seen, version = self.keys, self.version
            if self._arrived < self._rendezvous:
                self._arrived += 1
                if self._arrived == self._rendezvous:
                    self._all_read.set()
                await self._all_read.wait()
            new = updater(seen)  # an exception aborts, as the protocol says
            await asyncio.sleep(0)
            if self.version != version:
                self.conflicts += 1
                continue
            self.keys, self.version = new, version + 1
            return new


def manager(
    store: Any, clock: FrozenClock, alg: str = "RS256", lifetime: timedelta = 24 * HOUR
) -> KeyManager:
    return KeyManager(store, clock, algorithm=alg, rotation_period=6 * HOUR, id_token_lifetime=lifetime)


def kids(jwks: dict[str, Any]) -> list[str]:
    return [k["kid"] for k in jwks["keys"]]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims).encode())
    return f"{head}.{body}.{b64(signature)}"


def claims_at(now: datetime, ttl: timedelta = HOUR) -> dict[str, Any]:
    return {"iss": "https://i", "sub": "s", "aud": "a", "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp())}


# --- loading and rotation ---------------------------------------------------------------------------


async def test_first_start_creates_keys_and_not_due_does_nothing() -> None:
    store, clock = FakeKeyStore(), FrozenClock(T0)
    km = manager(store, clock)
    with pytest.raises(KeysNotLoaded):
        km.sign({"a": 1})
    with pytest.raises(KeysNotLoaded):
        km.jwks_bytes()
    await km.ensure_loaded()
    assert store.version == 1
    assert store.keys.next_rotation == T0 + 6 * HOUR
    assert store.keys.signing_key is not None and store.keys.verification_keys == ()
    priv = store.keys.signing_key
    assert {priv["kty"], priv["alg"], priv["use"]} == {"RSA", "RS256", "sig"} and "d" in priv
    assert km.next_rotation == T0 + 6 * HOUR
    [pub] = km.jwks()["keys"]
    assert pub["kid"] == priv["kid"] and pub["alg"] == "RS256" and pub["use"] == "sig"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(pub)  # never publish private members
    assert int.from_bytes(base64.urlsafe_b64decode(pub["n"] + "==")).bit_length() == 2048

    clock.advance(5 * HOUR + timedelta(minutes=59))
    assert await km.rotate_if_due() is False
    assert store.version == 1


async def test_due_rotation_moves_old_key_to_verification_keys() -> None:
    store, clock = FakeKeyStore(), FrozenClock(T0)
    km = manager(store, clock)
    await km.ensure_loaded()
    old_kid = km.jwks()["keys"][0]["kid"]
    old_token = km.sign(claims_at(T0, 24 * HOUR))

    clock.advance(6 * HOUR)  # exactly next_rotation: due (Dex rotates unless now < next_rotation)
    assert await km.rotate_if_due() is True
    [vk] = store.keys.verification_keys
    assert vk.public_key["kid"] == old_kid and "d" not in vk.public_key
    assert vk.expiry == T0 + 6 * HOUR + 24 * HOUR
    assert store.keys.next_rotation == T0 + 12 * HOUR
    new_kid = store.keys.signing_key["kid"]  # type: ignore[index]
    assert new_kid != old_kid
    assert kids(km.jwks()) == [new_kid, old_kid]
    assert json.loads(km.jwks_bytes()) == km.jwks()

    # Tokens signed by the old key still verify; new tokens use the new key.
    assert km.verify(old_token, now=clock.now())["sub"] == "s"
    header = json.loads(base64.urlsafe_b64decode(km.sign(claims_at(clock.now())).split(".")[0] + "=="))
    assert header == {"alg": "RS256", "kid": new_kid}


async def test_expired_verification_keys_leave_jwks_then_storage() -> None:
    store, clock = FakeKeyStore(), FrozenClock(T0)
    km = manager(store, clock, lifetime=HOUR)
    await km.ensure_loaded()
    k1 = km.jwks()["keys"][0]["kid"]
    k1_token = km.sign(claims_at(T0, 10 * HOUR))
    clock.set(T0 + 6 * HOUR)
    assert await km.rotate_if_due()
    k2 = store.keys.signing_key["kid"]  # type: ignore[index]
    before = km.jwks_bytes()
    assert kids(km.jwks()) == [k2, k1]
    assert km.jwks_bytes() is before  # rendered once, not per request

    clock.set(T0 + 7 * HOUR)  # k1's verification expiry: gone from the JWKS without any storage change
    assert kids(km.jwks()) == [k2]
    assert kids(json.loads(km.jwks_bytes())) == [k2]
    with pytest.raises(InvalidToken):
        km.verify(k1_token, now=clock.now())

    clock.set(T0 + 12 * HOUR)
    assert await km.rotate_if_due()
    k3 = store.keys.signing_key["kid"]  # type: ignore[index]
    assert [vk.public_key["kid"] for vk in store.keys.verification_keys] == [k2]  # k1 dropped
    assert kids(km.jwks()) == [k3, k2]


async def test_refresh_parses_only_on_change_and_follows_other_replicas() -> None:
    store, clock = FakeKeyStore(), FrozenClock(T0)
    a, b = manager(store, clock), manager(store, clock)
    await a.ensure_loaded()
    await b.ensure_loaded()  # not due: b only loads what a created
    assert store.version == 1 and b.jwks() == a.jwks()
    body = b.jwks_bytes()
    await b.refresh()
    assert b.jwks_bytes() is body  # unchanged key set: nothing rebuilt
    token = b.sign(claims_at(T0))
    assert a.verify(token, now=T0)["iss"] == "https://i"

    clock.advance(6 * HOUR)
    assert await a.rotate_if_due()
    assert b.jwks() != a.jwks()
    await b.refresh()
    assert b.jwks() == a.jwks()


async def test_es256() -> None:
    store, clock = FakeKeyStore(), FrozenClock(T0)
    km = manager(store, clock, alg="ES256")
    await km.ensure_loaded()
    [pub] = km.jwks()["keys"]
    assert (pub["kty"], pub["crv"], pub["alg"], pub["use"]) == ("EC", "P-256", "ES256", "sig")
    assert "d" not in pub
    assert km.algorithm == "ES256" and km.signing_alg_values() == ["ES256"]
    token = km.sign(claims_at(T0))
    assert len(base64.urlsafe_b64decode(token.split(".")[2] + "==")) == 64  # raw r||s, not DER
    assert km.verify(token, now=T0)["sub"] == "s"


async def test_algorithm_switch_keeps_old_tokens_verifiable() -> None:
    store, clock = FakeKeyStore(), FrozenClock(T0)
    rsa = manager(store, clock, alg="RS256")
    await rsa.ensure_loaded()
    rsa_token = rsa.sign(claims_at(T0, 24 * HOUR))
    ec = manager(store, clock, alg="ES256")  # a restart with signer.config.algorithm changed
    await ec.ensure_loaded()
    assert ec.algorithm == "RS256"  # the current key decides until the next rotation
    clock.advance(6 * HOUR)
    assert await ec.rotate_if_due()
    assert ec.algorithm == "ES256" and ec.signing_alg_values() == ["ES256", "RS256"]
    assert ec.verify(rsa_token, now=clock.now())["sub"] == "s"


async def test_concurrent_rotation_exactly_one_wins() -> None:
    store, clock = FakeKeyStore(rendezvous=2), FrozenClock(T0)
    a, b = manager(store, clock), manager(store, clock)
    results = await asyncio.gather(a.rotate_if_due(), b.rotate_if_due())
    assert sorted(results) == [False, True]
    assert store.conflicts == 1  # both really raced: the loser re-ran its updater on the winner's keys
    assert store.version == 1 and store.keys.verification_keys == ()

    # And again at the next rotation, with both already loaded.
    await a.refresh()
    await b.refresh()
    clock.advance(6 * HOUR)
    store.rearm(2)
    results = await asyncio.gather(a.rotate_if_due(), b.rotate_if_due())
    assert sorted(results) == [False, True]
    assert store.version == 2 and len(store.keys.verification_keys) == 1


async def test_run_forever_survives_errors(caplog: pytest.LogCaptureFixture) -> None:
    class FlakyStore(FakeKeyStore):
        failures = 2

        async def get_keys(self) -> Keys:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("database down")
            return await super().get_keys()

    store, clock = FlakyStore(), FrozenClock(T0)
    km = manager(store, clock)
    caplog.set_level(logging.ERROR, logger="portico.keys")
    task = asyncio.create_task(km.run_forever(check_interval=0.01))
    try:
        for _ in range(500):
            if km.loaded:
                break
            await asyncio.sleep(0.01)
        assert km.loaded and not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert "rotation/refresh failed" in caplog.text


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="HS256"):
        KeyManager(FakeKeyStore(), FrozenClock(T0), algorithm="HS256", rotation_period=HOUR,
                   id_token_lifetime=HOUR)
    with pytest.raises(ValueError):
        KeyManager(FakeKeyStore(), FrozenClock(T0), rotation_period=timedelta(0), id_token_lifetime=HOUR)


# --- verification -----------------------------------------------------------------------------------


@pytest.fixture
async def loaded() -> KeyManager:
    km = manager(FakeKeyStore(), FrozenClock(T0))
    await km.ensure_loaded()
    return km


async def test_verify_accepts_own_token(loaded: KeyManager) -> None:
    claims = claims_at(T0)
    assert loaded.verify(loaded.sign(claims), now=T0) == claims


async def test_verify_rejects_alg_none(loaded: KeyManager) -> None:
    kid = loaded.jwks()["keys"][0]["kid"]
    for alg in ("none", "None", "NONE"):
        with pytest.raises(InvalidToken):
            loaded.verify(forge({"alg": alg, "kid": kid}, claims_at(T0)), now=T0)


async def test_verify_rejects_hs256_key_confusion(loaded: KeyManager) -> None:
    pub = loaded.jwks()["keys"][0]
    header, claims = {"alg": "HS256", "kid": pub["kid"]}, claims_at(T0)
    # Sign with the public key material as the HMAC secret, in the forms a confused verifier might use.
    for secret in (json.dumps(pub).encode(), loaded.jwks_bytes(), pub["n"].encode()):
        signing_input = forge(header, claims).rsplit(".", 1)[0].encode()
        sig = hmac.new(secret, signing_input, hashlib.sha256).digest()
        with pytest.raises(InvalidToken):
            loaded.verify(signing_input.decode() + "." + b64(sig), now=T0)


async def test_verify_rejects_alg_not_matching_key(loaded: KeyManager) -> None:
    token = loaded.sign(claims_at(T0))
    _, body, sig = token.split(".")
    for alg in ("RS384", "PS256", "ES256"):
        forged_head = b64(json.dumps({"alg": alg, "kid": loaded.jwks()["keys"][0]["kid"]}).encode())
        with pytest.raises(InvalidToken):
            loaded.verify(f"{forged_head}.{body}.{sig}", now=T0)


async def test_verify_rejects_unknown_or_missing_kid(loaded: KeyManager) -> None:
    other = manager(FakeKeyStore(), FrozenClock(T0))
    await other.ensure_loaded()
    with pytest.raises(InvalidToken, match="unknown signing key"):
        loaded.verify(other.sign(claims_at(T0)), now=T0)
    # Same signature, our kid swapped in: the header is signed, so this fails too.
    _, body, sig = other.sign(claims_at(T0)).split(".")
    ours = b64(json.dumps({"alg": "RS256", "kid": loaded.jwks()["keys"][0]["kid"]}).encode())
    with pytest.raises(InvalidToken):
        loaded.verify(f"{ours}.{body}.{sig}", now=T0)
    no_kid = b64(json.dumps({"alg": "RS256"}).encode())
    with pytest.raises(InvalidToken):
        loaded.verify(f"{no_kid}.{body}.{sig}", now=T0)


async def test_verify_rejects_expired(loaded: KeyManager) -> None:
    token = loaded.sign(claims_at(T0, HOUR))
    assert loaded.verify(token, now=T0 + HOUR - timedelta(seconds=1))
    with pytest.raises(InvalidToken, match="expired"):
        loaded.verify(token, now=T0 + HOUR)  # exp <= now
    no_exp = {k: v for k, v in claims_at(T0).items() if k != "exp"}
    with pytest.raises(InvalidToken):
        loaded.verify(loaded.sign(no_exp), now=T0)


async def test_verify_rejects_tampered_payload(loaded: KeyManager) -> None:
    head, _, sig = loaded.sign(claims_at(T0)).split(".")
    evil = b64(json.dumps({**claims_at(T0), "sub": "admin"}).encode())
    with pytest.raises(InvalidToken, match="signature"):
        loaded.verify(f"{head}.{evil}.{sig}", now=T0)


@pytest.mark.parametrize("junk", ["", "a.b", "a.b.c", "....", "é.é.é", "x" * 20000])
async def test_verify_rejects_junk(loaded: KeyManager, junk: str) -> None:
    with pytest.raises(InvalidToken):
        loaded.verify(junk, now=T0)


async def test_verify_rejects_unexpected_header_members(loaded: KeyManager) -> None:
    kid = loaded.jwks()["keys"][0]["kid"]
    with pytest.raises(InvalidToken, match="header"):
        loaded.verify(forge({"alg": "RS256", "kid": kid, "jku": "https://evil/"}, claims_at(T0)), now=T0)


# --- against the real storage backends (the conformance suite covers them in depth) -------------------


async def test_rotation_with_memory_storage() -> None:
    from appliance.config.schema import StorageConfig
    from appliance.store.open import open_storage

    storage = await open_storage(StorageConfig(type="memory"))
    try:
        clock = FrozenClock(T0)
        a, b = manager(storage, clock), manager(storage, clock)
        assert sorted(await asyncio.gather(a.rotate_if_due(), b.rotate_if_due())) == [False, True]
        await a.refresh()
        await b.refresh()
        token = a.sign(claims_at(T0, 24 * HOUR))
        clock.advance(6 * HOUR)
        assert sorted(await asyncio.gather(a.rotate_if_due(), b.rotate_if_due())) == [False, True]
        await a.refresh()
        await b.refresh()
        stored = await storage.get_keys()
        assert stored.next_rotation == T0 + 12 * HOUR and len(stored.verification_keys) == 1
        assert a.jwks() == b.jwks() and len(a.jwks()["keys"]) == 2
        assert b.verify(token, now=clock.now())["sub"] == "s"
    finally:
        await storage.close()


async def test_two_processes_share_one_sqlite_file(tmp_path: Any) -> None:
    from appliance.config.schema import StorageConfig
    from appliance.store.open import open_storage

    cfg = StorageConfig(type="sqlite3", config={"file": "portico.db"})
    one = await open_storage(cfg, base_dir=str(tmp_path))
    two = await open_storage(cfg, base_dir=str(tmp_path))
    try:
        clock = FrozenClock(T0)
        a, b = manager(one, clock, alg="ES256"), manager(two, clock, alg="ES256")
        for _ in range(3):
            assert sorted(await asyncio.gather(a.rotate_if_due(), b.rotate_if_due())) == [False, True]
            clock.advance(6 * HOUR)
        await a.refresh()
        await b.refresh()
        assert a.jwks() == b.jwks() and len(a.jwks()["keys"]) == 3
    finally:
        await one.close()
        await two.close()


# --- the cache of checked signatures ------------------------------------------------------------------


async def test_verify_checks_a_signature_once_and_expiry_every_time(
    loaded: KeyManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[bytes] = []
    real = _Entry.verify

    def counting(self: _Entry, signing_input: bytes, signature: bytes) -> bool:
        checks.append(signing_input)
        return real(self, signing_input, signature)

    monkeypatch.setattr(_Entry, "verify", counting)
    token = loaded.sign(claims_at(T0, HOUR))
    first = loaded.verify(token, now=T0)
    first["sub"] = "changed by a caller"  # a copy: the remembered claims stay as signed
    assert loaded.verify(token, now=T0 + timedelta(minutes=30))["sub"] == "s"
    assert len(checks) == 1
    with pytest.raises(InvalidToken, match="expired"):
        loaded.verify(token, now=T0 + HOUR)  # remembered, and still expired on time
    # A failed check is not remembered: the tampered token is checked (and refused) each time.
    head, _, sig = token.split(".")
    evil = f"{head}.{b64(json.dumps({**claims_at(T0), 'sub': 'admin'}).encode())}.{sig}"
    for _ in range(2):
        with pytest.raises(InvalidToken, match="signature"):
            loaded.verify(evil, now=T0)
    assert len(checks) == 3


async def test_remembered_token_fails_once_its_key_expires_or_leaves() -> None:
    store, clock = FakeKeyStore(), FrozenClock(T0)
    km = manager(store, clock, lifetime=HOUR)
    await km.ensure_loaded()
    token = km.sign(claims_at(T0, 10 * HOUR))
    assert km.verify(token, now=T0)["sub"] == "s"
    clock.set(T0 + 6 * HOUR)
    assert await km.rotate_if_due()  # a new key set (and so a new cache): the old key verifies until +7 h
    assert km.verify(token, now=clock.now())["sub"] == "s"
    clock.set(T0 + 7 * HOUR)
    with pytest.raises(InvalidToken, match="unknown signing key"):
        km.verify(token, now=clock.now())


async def test_remembered_tokens_are_bounded(loaded: KeyManager) -> None:
    tokens = [loaded.sign({**claims_at(T0), "n": i}) for i in range(VERIFIED_CACHE_SIZE + 10)]
    for token in tokens:
        loaded.verify(token, now=T0)
    cache = loaded._current().loaded._verified
    assert len(cache) == VERIFIED_CACHE_SIZE
    assert tokens[0] not in cache and tokens[-1] in cache
