"""`portico init`: asks for issuer, listener and TLS, storage, the first connector and client, writes a
commented config.yaml, validates it, and shows the kube-apiserver flags and a kubeconfig snippet."""

from __future__ import annotations

import asyncio
import os

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Select, Static, TextArea

from appliance.tui.dialogs import ConfirmDialog
from appliance.tui.initconfig import (
    InitAnswers,
    kube_apiserver_flags,
    kubeconfig_snippet,
    problems_text,
    render_config,
    validate,
)

__all__ = ["WizardScreen"]

_TEXT_FIELDS = (
    ("issuer", "Issuer URL (what clients and the API server use)"),
    ("listen", "Listen address (host:port)"),
    ("tls_cert", "TLS certificate file (empty: plain HTTP behind a proxy)"),
    ("tls_key", "TLS key file"),
    ("sqlite_file", "SQLite file (storage sqlite3)"),
    ("pg_host", "PostgreSQL host (storage postgres)"),
    ("pg_database", "PostgreSQL database"),
    ("pg_user", "PostgreSQL user (password from $PORTICO_DB_PASSWORD)"),
    ("admin_email", "First user's email (connector local)"),
    ("admin_password", "First user's password (empty: generated and shown)"),
    ("ldap_host", "LDAP host:port (connector ldap; bind password from $LDAP_BIND_PW)"),
    ("ldap_bind_dn", "LDAP bind DN"),
    ("ldap_user_base_dn", "LDAP user base DN"),
    ("client_id", "First client ID (e.g. the Kubernetes API server)"),
    ("client_redirect_uri", "Its redirect URI (kubelogin: http://localhost:8000)"),
)


class WizardScreen(Screen[None]):
    BINDINGS = [Binding("ctrl+s", "write", "Write config"), Binding("escape", "app.quit", "Quit")]

    def __init__(self, output: str) -> None:
        super().__init__()
        self._output = output

    def compose(self) -> ComposeResult:
        defaults = InitAnswers()
        yield Static(f"Portico setup: writes {self._output}", id="nav")
        with VerticalScroll(id="wizard-form"):
            for name, label in _TEXT_FIELDS[:4]:
                yield Label(label, classes="field-label")
                yield Input(str(getattr(defaults, name)), id=f"w-{name}", compact=True)
            yield Label("Storage", classes="field-label")
            yield Select([("SQLite (one server)", "sqlite3"), ("PostgreSQL (replicas)", "postgres")],
                         value="sqlite3", allow_blank=False, id="w-storage", compact=True)
            for name, label in _TEXT_FIELDS[4:8]:
                yield Label(label, classes="field-label")
                yield Input(str(getattr(defaults, name)), id=f"w-{name}", compact=True)
            yield Label("First connector", classes="field-label")
            yield Select([("Local password database", "local"), ("LDAP", "ldap")], value="local",
                         allow_blank=False, id="w-connector", compact=True)
            for name, label in _TEXT_FIELDS[8:]:
                yield Label(label, classes="field-label")
                yield Input(str(getattr(defaults, name)), id=f"w-{name}", password=name == "admin_password",
                            compact=True)
            yield Static("", id="error", classes="error hidden", markup=False)
            yield Button("Write config (ctrl+s)", variant="primary", id="write")
        yield Footer()

    def answers(self) -> InitAnswers:
        values: dict[str, str] = {name: self.query_one(f"#w-{name}", Input).value.strip()
                                  for name, _ in _TEXT_FIELDS}
        for name in ("storage", "connector"):
            values[name] = str(self.query_one(f"#w-{name}", Select).value)
        return InitAnswers(**values)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_write()

    @work(exclusive=True)
    async def action_write(self) -> None:
        answers = self.answers()
        password = answers.admin_password
        if answers.connector == "local" and not password:
            from appliance.ids import new_secret

            password = new_secret(12)
            answers = InitAnswers(**{**answers.__dict__, "admin_password": password})
        text, secret = await asyncio.to_thread(render_config, answers)
        problems = validate(text)
        errors = [p for p in problems if p.severity == "error"]
        box = self.query_one("#error", Static)
        if errors:
            box.update("The configuration would not load:\n" + problems_text(errors))
            box.remove_class("hidden")
            return
        box.add_class("hidden")
        if await asyncio.to_thread(os.path.exists, self._output):
            if not await self.app.push_screen_wait(ConfirmDialog(f"{self._output} exists. Replace it?",
                                                                 yes="Replace")):
                return
        where = await asyncio.to_thread(_write_private, self._output, text)
        summary = [f"Wrote {where} (validated: 0 errors).", ""]
        if answers.connector == "local":
            summary += [f"First user: {answers.admin_email} / {password}", ""]
        summary += ["kube-apiserver flags:", kube_apiserver_flags(answers), "",
                    "kubeconfig (kubelogin):", kubeconfig_snippet(answers, secret), "",
                    f"Start it: portico serve {self._output}"]
        self.app.push_screen(ResultScreen("\n".join(summary)))


def _write_private(path: str, text: str) -> str:
    # It holds a client secret and a password hash: readable by its owner only (chgrp it to portico).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return os.path.abspath(path)


class ResultScreen(Screen[None]):
    BINDINGS = [Binding("q,escape,enter", "finish", "Done")]

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    def compose(self) -> ComposeResult:
        yield Static("Portico setup: done (this is printed again when you quit)", id="nav")
        yield TextArea(self._text, id="wizard-result", read_only=True)
        yield Footer()

    def action_finish(self) -> None:
        self.app.exit(self._text)
