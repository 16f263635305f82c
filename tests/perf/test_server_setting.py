"""web.server is read once at start-up: a reload that changes it says so and keeps the running server."""

from __future__ import annotations

from perf_support import config_text, make_config

from appliance.admin.configdiff import keep_running
from appliance.cli.version import version_text


def test_a_changed_web_server_waits_for_a_restart() -> None:
    started = make_config(config_text())
    changed = make_config(config_text(web_extra="  server: hypercorn\n"))
    kept, restart = keep_running(changed, started)
    assert "web.server" in restart
    assert kept.web.server == started.web.server == "granian"
    same, nothing = keep_running(make_config(config_text()), started)
    assert nothing == () and same.web.server == "granian"


def test_the_version_names_the_web_server_library() -> None:
    lines = version_text().splitlines()
    assert any(line.startswith("granian ") and "not installed" not in line for line in lines)
