"""Hot reload against a running server whose config file the test edits (watchfiles, SIGHUP, the API)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from adminutil import Server, base_config, client_entry, start_server, wait_for

from appliance.admin.watch import QUIET_S

pytestmark = pytest.mark.timeout(120)


def _applied(server: Server, trigger: str = "watch") -> list[dict[str, Any]]:
    return [r for r in server.history() if r["trigger"] == trigger and r["result"] == "applied"]


def _rejections(server: Server) -> int:
    return sum(r["result"] == "rejected" for r in server.history())


def _with_clients(port: int, *ids: str) -> dict[str, Any]:
    config = base_config(port)
    config["staticClients"] += [client_entry(i) for i in ids]
    return config


def test_new_static_client_works_without_restart(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        assert server.token_error("app2", "s3cret") == "invalid_client"
        pid = server.proc.pid
        server.write_config(_with_clients(server.port, "app2"))
        wait_for(lambda: server.token_error("app2", "s3cret") == "invalid_grant", what="app2 to be known")
        assert server.token_error("app", "app-secret") == "invalid_grant"  # the old client still works
        assert server.proc.pid == pid and server.proc.poll() is None
        report = _applied(server)[0]
        assert "staticClients +app2" in report["changes"]
        assert "configuration reload (watch) applied: staticClients +app2" in server.stderr()
    finally:
        server.stop()


def test_broken_edits_are_rejected_reported_and_the_old_config_keeps_serving(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        good = yaml.safe_dump(_with_clients(server.port, "app2"), sort_keys=False)
        # A validation error with a key path and a line, plus the new client that must not appear.
        server.write_config(good + "expiry:\n  idTokens: 1d\n")
        line = len(good.splitlines()) + 2
        report = wait_for(lambda: next((r for r in server.history() if r["result"] == "rejected"), None),
                          what="a rejected reload")
        assert report["problems"][0]["path"] == "expiry.idTokens"
        assert report["problems"][0]["line"] == line
        assert f"config.yaml:{line}: error: expiry.idTokens" in server.stderr()
        assert server.token_error("app", "app-secret") == "invalid_grant"
        assert server.token_error("app2", "s3cret") == "invalid_client"
        metrics = server.admin().call("GET", "/v1/metrics", query={"format": "prometheus"})
        assert 'portico_config_reloads_total{result="rejected"} 1' in metrics
        assert "portico_config_last_reload_successful 0" in metrics

        # Bad YAML: rejected with its line too.
        server.write_config(good + "oops: [\n")
        wait_for(lambda: _rejections(server) == 2, what="second rejection")
        assert "invalid YAML" in server.history()[0]["problems"][0]["message"]

        # A connector that cannot be opened (mockPassword without its username) is rejected as well.
        broken = _with_clients(server.port, "app2")
        broken["connectors"] = [{"type": "mockPassword", "id": "mp", "name": "MP", "config": {}}]
        server.write_config(broken)
        wait_for(lambda: _rejections(server) == 3, what="third rejection")
        assert "connector 'mp'" in server.history()[0]["problems"][-1]["message"]
        assert server.token_error("app2", "s3cret") == "invalid_client"

        # Fixing the file applies it.
        server.write_config(good)
        wait_for(lambda: server.token_error("app2", "s3cret") == "invalid_grant", what="the fixed config")
        metrics = server.admin().get("/v1/metrics")
        assert metrics["portico_config_last_reload_successful"] is True
        assert metrics["portico_config_reloads_total_rejected"] == 3
    finally:
        server.stop()


def test_configmap_symlink_swap_reloads(tmp_path: Path) -> None:
    """The kubelet's layout: config.yaml -> ..data/config.yaml, ..data -> ..<version>, swapped by rename."""
    mount = tmp_path / "configmap"
    mount.mkdir()

    def publish(version: str, text: str) -> None:
        folder = mount / f"..{version}"
        folder.mkdir()
        (folder / "config.yaml").write_text(text)
        (mount / "..data_tmp").symlink_to(folder.name)
        os.replace(mount / "..data_tmp", mount / "..data")  # the atomic swap

    def remove(version: str) -> None:  # the kubelet deletes the old version afterwards
        for f in (mount / f"..{version}").iterdir():
            f.unlink()
        (mount / f"..{version}").rmdir()

    publish("v1", yaml.safe_dump(base_config(0), sort_keys=False).replace(":0", ":PORT"))
    (mount / "config.yaml").symlink_to("..data/config.yaml")
    # The placeholder port is filled in through the symlink, as any editor would write it.
    server = start_server(tmp_path, config_path=mount / "config.yaml", write=False)
    try:
        assert (mount / "config.yaml").is_symlink()
        assert server.token_error("app2", "s3cret") == "invalid_client"
        publish("v2", yaml.safe_dump(_with_clients(server.port, "app2"), sort_keys=False))
        remove("v1")
        wait_for(lambda: server.token_error("app2", "s3cret") == "invalid_grant", what="the swapped config")
        # A second swap works too: the watcher follows the new target folder.
        publish("v3", yaml.safe_dump(_with_clients(server.port, "app2", "app3"), sort_keys=False))
        remove("v2")
        wait_for(lambda: server.token_error("app3", "s3cret") == "invalid_grant", what="the second swap")
        applied = _applied(server)
        assert [r["changes"] for r in reversed(applied)] == [["staticClients +app2"], ["staticClients +app3"]]
    finally:
        server.stop()


def test_burst_of_20_writes_is_one_reload_of_the_final_content(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        before = len(_applied(server))
        # Rendered up front: the burst itself is 20 plain writes, as fast as a tool that rewrites a file.
        texts = [yaml.safe_dump(_with_clients(server.port, f"burst{i}"), sort_keys=False) for i in range(20)]
        time.sleep(QUIET_S + 0.5)  # the watcher's own start-up check is behind us
        for text in texts:
            server.write_config(text)
            time.sleep(0.005)
        wait_for(lambda: server.token_error("burst19", "s3cret") == "invalid_grant", what="the final content")
        time.sleep(1.5)  # a second reload would have happened by now
        applied = _applied(server)
        assert len(applied) == before + 1, applied
        assert applied[0]["changes"] == ["staticClients +burst19"]
        assert server.token_error("burst18", "s3cret") == "invalid_client"
    finally:
        server.stop()


def test_editor_rename_save_and_sighup(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        # vim/emacs style: write a temporary file, rename it over the original.
        temp = tmp_path / ".config.yaml.swp"
        temp.write_text(yaml.safe_dump(_with_clients(server.port, "renamed"), sort_keys=False))
        os.replace(temp, server.config_path)
        wait_for(lambda: server.token_error("renamed", "s3cret") == "invalid_grant", what="the renamed file")
        assert len(_applied(server)) == 1

        server.proc.send_signal(signal.SIGHUP)
        report = wait_for(lambda: next((r for r in server.history() if r["trigger"] == "sighup"), None),
                          what="the SIGHUP reload")
        assert report["result"] == "applied"
        assert server.proc.poll() is None
    finally:
        server.stop()


def test_settings_that_need_a_restart_are_reported_and_kept(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        config = _with_clients(server.port, "app2")
        config["web"] = {"http": "127.0.0.1:1"}
        config["storage"] = {"type": "memory"}
        server.write_config(config)
        report = wait_for(lambda: next(iter(_applied(server)), None), what="the reload")
        assert {"web.http", "storage"} <= set(report["restart_required"])
        assert server.token_error("app2", "s3cret") == "invalid_grant"  # the rest applied, same listener
        assert "need a restart" in server.stderr()
    finally:
        server.stop()


def test_no_request_fails_while_reloading(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    errors: list[str] = []
    answers: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                try:
                    r = http.get(f"{server.issuer}/.well-known/openid-configuration")
                    answers.append(r.status_code)
                    if r.status_code != 200:
                        errors.append(f"{r.status_code}: {r.text[:100]}")
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        for i in range(5):
            server.write_config(_with_clients(server.port, f"c{i}"))
            wait_for(lambda i=i: server.token_error(f"c{i}", "s3cret") == "invalid_grant", what=f"c{i}")
        # API-triggered reloads (forced rebuilds) under the same load.
        for _ in range(3):
            assert server.admin().post("/v1/reload")["result"] == "applied"
    finally:
        stop.set()
        for t in threads:
            t.join()
        server.stop()
    assert not errors, errors[:5]
    assert len(answers) > 50
