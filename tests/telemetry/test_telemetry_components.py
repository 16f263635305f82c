"""The telemetry pieces in-process: the middleware around a real Quart app, the storage error counter
over a real SQLite store, and the storage probe's timeout, cache and single flight."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from quart import Quart, Response, g

from appliance.errors import NotFound
from appliance.store.base import Steps
from appliance.store.models import Client
from appliance.store.sqlite import MEMORY, open_sqlite
from appliance.telemetry.context import current_request_id
from appliance.telemetry.health import StorageProbe
from appliance.telemetry.instrument import watch_storage
from appliance.telemetry.metrics import Telemetry
from appliance.telemetry.middleware import TelemetryMiddleware, TrustedProxies, route_resolver


def _app() -> Quart:
    app = Quart("telemetry-test", static_folder=None)

    @app.route("/dex/auth/<connector_id>", methods=["GET"])  # labelled with Dex's name, {connector}
    async def auth(connector_id: str) -> Response:
        return Response(f"{connector_id}:{current_request_id()}")

    @app.route("/dex/static/<path:filename>")
    async def assets(filename: str) -> Response:
        return Response("x" * 1000)

    @app.after_request
    async def own_header(response: Response) -> Response:
        response.headers["X-Request-Id"] = "the-app-s-own"  # replaced by the middleware's
        g.seen = True
        return response

    return app


def _samples(telemetry: Telemetry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(telemetry.render().decode()):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


async def _client(trusted: tuple[str, ...] = ()) -> tuple[httpx.AsyncClient, Telemetry]:
    telemetry = Telemetry({"version": "test"}, process=False)
    app = _app()
    wrapped = TelemetryMiddleware(app, telemetry.http, route_resolver(app.url_map, "/dex"),
                                  trusted=TrustedProxies(lambda: trusted))
    transport = httpx.ASGITransport(app=wrapped, client=("127.0.0.1", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://idp"), telemetry


async def test_route_patterns_label_requests_and_ids_are_ours() -> None:
    client, telemetry = await _client()
    async with client:
        first = await client.get("/dex/auth/local", headers={"X-Request-Id": "chosen-by-client"})
        second = await client.get("/dex/auth/ldap")
        await client.get("/dex/static/css/a/b.css")
        await client.post("/dex/auth/local")  # 405 on a known route
        await client.get("/dex/nowhere/" + "x" * 50)
        await client.request("BREW", "/dex/auth/local")
    rid = first.headers["x-request-id"]
    assert first.headers.get_list("x-request-id") == [rid]
    assert rid != "chosen-by-client" and len(rid) == 16 and first.text == f"local:{rid}"
    assert second.headers["x-request-id"] != rid
    counts = _samples(telemetry, "http_requests_total")
    assert counts == {
        (("code", "200"), ("handler", "/auth/{connector}"), ("method", "get")): 2.0,
        (("code", "200"), ("handler", "/static/{filename}"), ("method", "get")): 1.0,
        (("code", "405"), ("handler", "/auth/{connector}"), ("method", "post")): 1.0,
        (("code", "404"), ("handler", "other"), ("method", "get")): 1.0,
        (("code", "405"), ("handler", "/auth/{connector}"), ("method", "other")): 1.0,
    }
    assert _samples(telemetry, "portico_http_requests_in_flight") == {(): 0.0}
    sizes = _samples(telemetry, "response_size_bytes_bucket")
    static = {le: v for labels, v in sizes.items() for k, le in labels
              if k == "le" and ("handler", "/static/{filename}") in labels}
    assert static["900.0"] == 0.0 and static["1500.0"] == 1.0 and static["+Inf"] == 1.0


async def test_a_trusted_proxy_s_sane_request_id_is_kept() -> None:
    client, _ = await _client(trusted=("10.0.0.0/8", "127.0.0.1/32"))
    async with client:
        kept = await client.get("/dex/auth/local", headers={"X-Request-Id": "edge-7f3a.42"})
        replaced = await client.get("/dex/auth/local", headers={"X-Request-Id": "bad id\"quote"})
    assert kept.headers["x-request-id"] == "edge-7f3a.42" and kept.text == "local:edge-7f3a.42"
    assert replaced.headers["x-request-id"] != "bad id\"quote"


def _client_record(n: int) -> Client:
    return Client(id=f"c{n}", secret="s", redirect_uris=(), name=f"client {n}")


async def test_storage_errors_are_counted_and_typed_answers_are_not() -> None:
    errors: list[str] = []
    database = await open_sqlite(MEMORY)
    storage = watch_storage(database, errors.append)
    await storage.clients.create(_client_record(1))
    with pytest.raises(NotFound):
        await storage.clients.get("missing")

    def refuse(current: Client) -> Client:
        raise RuntimeError("caller aborts the compare-and-swap")

    with pytest.raises(RuntimeError):
        await storage.clients.update("c1", refuse)
    renamed = await storage.clients.update("c1", lambda c: dataclasses.replace(c, name="renamed"))
    assert renamed.name == "renamed" and errors == []
    await database.close()  # from here every operation fails inside the driver
    for operation in (storage.clients.get("c1"), storage.clients.list(), storage.ping(),
                      storage.garbage_collect(datetime.now(UTC) + timedelta(days=1))):
        with pytest.raises(Exception) as caught:
            await operation
        assert not isinstance(caught.value, NotFound)
    assert errors == ["get", "list", "ping", "garbage_collect"]


async def test_storage_runs_count_database_errors_not_their_own() -> None:
    errors: list[str] = []
    database = await open_sqlite(MEMORY)
    storage = watch_storage(database, errors.append)

    def refusing() -> Steps[None]:
        yield from storage.clients.steps.find("c1")
        raise RuntimeError("the work aborts the transaction")

    with pytest.raises(RuntimeError):
        await storage.run(refusing(), write=True)
    with pytest.raises(NotFound):
        await storage.run(storage.clients.steps.delete("missing"), write=True)
    assert await storage.run(storage.clients.steps.find("c1")) is None and errors == []
    await database.close()
    with pytest.raises(Exception) as caught:
        await storage.run(storage.clients.steps.find("c1"))
    assert not isinstance(caught.value, NotFound) and errors == ["run"]


async def test_probe_times_out_caches_and_shares_one_ping() -> None:
    pings = 0
    delay = 0.0
    failures: list[int] = []

    async def ping() -> None:
        nonlocal pings
        pings += 1
        await asyncio.sleep(delay)

    clock = [100.0]
    probe = StorageProbe(ping, timeout=0.05, ttl=3.0, on_failure=lambda: failures.append(1),
                         monotonic=lambda: clock[0])
    first, second = await asyncio.gather(probe.check(), probe.check())
    assert first.ok and second is first and pings == 1
    assert (await probe.check()) is first and pings == 1  # cached
    clock[0] += 3.5
    delay = 1.0  # the database stops answering
    slow = await probe.check()
    assert not slow.ok and "did not answer within 0.05 s" in slow.error and slow.failures == 1
    clock[0] += 3.5
    again = await probe.check()
    assert again.failures == 2 and again.first_failure_at == slow.first_failure_at and len(failures) == 2
    clock[0] += 3.5
    delay = 0.0
    healed = await probe.check()
    assert healed.ok and healed.failures == 0 and healed.as_json()["first_failure_time"] is None
