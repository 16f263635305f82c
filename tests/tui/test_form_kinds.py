"""Every kind of key a connector form knows, through the form itself: what is typed becomes a config of
the right types, and what cannot be a value of the kind is said under its field before any call."""

from __future__ import annotations

from typing import Any

import pytest
from static_api import StaticApi
from textual.widgets import Checkbox, Input, Select, Static
from tuiutil import SIZE, fill, settle, text_of

from appliance.connectors.config_schema import Key, Schema
from appliance.tui.app import PorticoApp
from appliance.tui.connectorform import ConnectorForm
from appliance.tui.formdata import FieldError, from_text, to_text

SYNTHETIC = Schema("synthetic", "password", (
    Key("name", "string", required=True, example="x"),
    Key("token", "secret"),
    Key("port", "int", default="389"),
    Key("timeout", "duration", example="30s"),
    Key("enabled", "bool"),
    Key("basicAuth", "bool", tristate=True, default="detected"),
    Key("mode", "choice", choices=("fast", "safe")),
    Key("domains", "map", example={"*": "admin@example.com"}),
    Key("groups", "strings"),
    Key("block", "object", keys=(Key("inner", "string"),)),
    Key("items", "objects", keys=(Key("a", "string"), Key("b", "strings"))),
    Key("old", "string", legacy="replaced by name"),
))


class Api(StaticApi):
    """The static answers, plus a validate that records the body it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None,
                   query: dict[str, Any] | None = None) -> Any:
        if path.endswith("/validate"):
            self.bodies.append(body or {})
            return {"ok": True, "message": "fine", "problems": []}
        return await super().call(method, path, body, query)


def test_text_and_values() -> None:
    assert from_text("strings", " a, b ,, c ") == ["a", "b", "c"] and to_text("strings", ["a", "b"]) == "a, b"
    assert from_text("int", " 42 ") == 42 and from_text("int", "") is None
    assert from_text("map", "*=a@x, b.com = c@y") == {"*": "a@x", "b.com": "c@y"}
    assert to_text("map", {"*": "a@x"}) == "*=a@x"
    assert from_text("secret", " spaced ") == " spaced "  # never trimmed
    assert from_text("string", "  ") is None
    with pytest.raises(FieldError):
        from_text("int", "4x")
    with pytest.raises(FieldError):
        from_text("map", "no-equals-sign")


async def test_every_kind_through_the_form() -> None:
    api = Api()
    schemas = {"synthetic": SYNTHETIC.as_dict(), "extension": None}
    app = PorticoApp(api, start="connectors")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = ConnectorForm(api, schemas, type_="synthetic")
        await app.push_screen(form)
        await pilot.pause()
        assert not form.query("#f-old")  # legacy: not offered
        await fill(pilot, {"h-id": "syn", "name": "n1", "token": "t0k", "port": "4x", "timeout": "90s",
                           "domains": "*=root@example.com", "groups": "a, b"})
        form.query_one("#f-enabled", Checkbox).value = True
        form.query_one("#f-basicAuth", Select).value = False
        form.query_one("#f-mode", Select).value = "safe"
        await pilot.press("ctrl+t")
        await settle(pilot)
        # Caught here, not sent: a port must be a whole number.
        assert api.bodies == []
        assert "not a whole number" in text_of(form.query_one("#e-port", Static))
        assert form.query_one("#f-port", Input).has_focus
        await fill(pilot, {"port": "636", "block.inner": "deep"})
        form.query_one("#add-items").focus()
        await pilot.press("enter")
        await settle(pilot)
        await fill(pilot, {"items[0].a": "first", "items[0].b": "x, y"})
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert api.bodies[-1] == {
            "id": "syn", "type": "synthetic", "name": "",
            "config": {"name": "n1", "token": "t0k", "port": 636, "timeout": "90s", "enabled": True,
                       "basicAuth": False, "mode": "safe", "domains": {"*": "root@example.com"},
                       "groups": ["a", "b"], "block": {"inner": "deep"},
                       "items": [{"a": "first", "b": ["x", "y"]}]}}
        assert text_of(form.query_one("#form-status", Static)) == "✓ test passed: fine"

        # A type the console has no schema for: its config as JSON.
        form.query_one("#h-type", Select).value = "extension"
        await settle(pilot)
        await fill(pilot, {"h-config": '{"any": ["thing"]}'})
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert api.bodies[-1]["type"] == "extension" and api.bodies[-1]["config"] == {"any": ["thing"]}
        await fill(pilot, {"h-config": "[1, 2"})
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert "not JSON" in text_of(form.query_one("#eh-config", Static)) and len(api.bodies) == 2
