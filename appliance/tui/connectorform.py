"""The connector form: one screen built from the connector type's config schema, every key of it.

Keyboard first: tab / shift+tab or up / down move between fields, space ticks a box, enter opens a
choice, ctrl+t tests without saving, ctrl+s tests and saves, esc cancels. The line under the fields
describes the focused key. The server validates and tests (the same checks as a config file, then a
real bind or login); its problems are shown under the fields they name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.events import DescendantFocus
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from appliance.tui.data import AdminAPIError, AdminUnavailable, Api
from appliance.tui.formdata import (
    FieldError,
    Key,
    collect,
    describe,
    error_id,
    field_id,
    from_text,
    keys_at,
    list_at,
    lookup,
    shown,
    shown_paths,
)
from appliance.tui.formfields import heading, indented, input_for, row

__all__ = ["ConnectorForm"]

# The connector's own fields, outside its config: ids that no config key can produce (no "f-" prefix).
_HEAD = {"id": "h-id", "name": "h-name", "type": "h-type", "test_username": "h-test_username",
         "test_password": "h-test_password"}
_HEAD_HELP = {
    "h-id": "id: the connector's ID (letters, digits, - and _), in URLs and in the users' sub claim",
    "h-name": "name: what the login page shows",
    "h-type": "type: the kind of upstream (enter to choose; type to search)",
    "h-test_username": "a user to log in as when testing (not saved)",
    "h-test_password": "that user's password (not saved)",
    "h-config": "the connector's config as a JSON object (this type has no form)",
}


class ConnectorForm(ModalScreen[dict[str, Any] | None]):
    """Create (`connector` None) or edit a stored connector; answers the server's reply, or None."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("ctrl+s", "save", "Test and save"),
        Binding("ctrl+t", "test", "Test"),
        Binding("down", "app.focus_next", show=False),
        Binding("up", "app.focus_previous", show=False),
    ]

    def __init__(self, api: Api, schemas: Mapping[str, Any], connector: Mapping[str, Any] | None = None,
                 type_: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self._api = api
        self._schemas = schemas
        self._edit = connector
        self._type = str(connector["type"]) if connector else type_
        self._value: dict[str, Any] = dict(connector.get("config") or {}) if connector else {}
        self._secrets = set(connector.get("secrets") or []) if connector else set()
        self._fields: dict[str, tuple[str, Key]] = {}  # widget id -> (key path, key)
        self._counts: dict[str, int] = {}  # list-of-objects path -> entries shown
        self._buttons: dict[str, tuple[str, str, int]] = {}  # button id -> ("add" | "remove", path, index)
        self._busy = False
        self._width = 24

    # --- building ---------------------------------------------------------------------------------

    @property
    def _schema(self) -> Mapping[str, Any] | None:
        found = self._schemas.get(self._type)
        return found if isinstance(found, Mapping) else None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog connector-form"):
            yield Label(self._title(), classes="dialog-title")
            with VerticalScroll(id="form-body"):
                config_rows = self._config_rows()  # first: it sets the label column's width
                yield from self._head_rows()
                with Vertical(id="config-rows"):
                    yield from config_rows
            yield Static("", id="form-hint", classes="form-hint", markup=False)
            yield Static("", id="form-status", classes="form-status hidden")
            with Horizontal(classes="form-buttons"):
                yield Button("Test ^t", id="test", compact=True)
                yield Button("Test and save ^s", variant="primary", id="save", compact=True)
                yield Button("Cancel esc", id="cancel", compact=True)

    def on_mount(self) -> None:
        first = self.query("Input, Select, Checkbox").first()
        first.focus()

    def _title(self) -> str:
        if self._edit is not None:
            return f"Edit connector {self._edit['id']} ({self._type})"
        return "New connector" + (f" ({self._type})" if self._type else "")

    def _head_rows(self) -> list[Widget]:
        rows: list[Widget] = []
        if self._edit is None:
            ident = Input(placeholder="e.g. corp-ldap", compact=True, id=_HEAD["id"])
            rows += row("id *", ident, f"e{_HEAD['id']}", self._width, "head-name")
            types = [(t, t) for t in self._schemas]
            choose: Select[str] = Select(types, prompt="choose a type", compact=True, id=_HEAD["type"],
                                         value=self._type if self._type in self._schemas else Select.BLANK)
            rows += row("type *", choose, f"e{_HEAD['type']}", self._width, "head-name")
        name = str(self._edit.get("name", "")) if self._edit else ""
        named = Input(name, placeholder="e.g. Corporate LDAP", compact=True, id=_HEAD["name"])
        rows += row("name", named, f"e{_HEAD['name']}", self._width, "head-name")
        return rows

    def _label_width(self) -> int:
        """One column for every input: as wide as the longest label (with its indent), at most 32."""
        schema = self._schema
        widest = 16
        if schema is not None:
            widest = max([widest, *(len(p.split(".")[-1]) + 2 * p.count(".") + 2 * p.count("[")
                                    for p in shown_paths(schema["keys"], self._value))])
        return min(widest + 1, 32)

    def _config_rows(self) -> list[Widget]:
        self._fields, self._counts, self._buttons = {}, {}, {}
        self._width = self._label_width()
        if not self._type:
            return [Static("Choose a type: its settings appear here.", classes="field-note")]
        schema = self._schema
        if schema is None:  # a type added without a schema: its config as JSON
            text = json.dumps(self._value) if self._value else ""
            return row("config", Input(text, placeholder='{"key": "value"}', compact=True, id="h-config"),
                       "eh-config", self._width)
        rows = self._rows(schema["keys"], self._value, "", 0)
        if schema.get("login") == "password":
            rows.append(Static(Text.assemble(("test login", "bold"), ("  optional, used by ^t and ^s; "
                                                                       "not saved", "dim")),
                               classes="field-heading"))
            rows += row("username", Input(compact=True, id=_HEAD["test_username"]),
                        f"e{_HEAD['test_username']}", self._width, "head-name")
            rows += row("password", Input(password=True, compact=True, id=_HEAD["test_password"]),
                        f"e{_HEAD['test_password']}", self._width, "head-name")
        return rows

    def _rows(self, keys: list[Key], value: Mapping[str, Any], prefix: str, depth: int) -> list[Widget]:
        out: list[Widget] = []
        for key in keys:
            name, kind, path = key["name"], key["kind"], prefix + key["name"]
            current = lookup(value, name)
            if not shown(key, current):
                continue
            if kind == "object":
                out += heading(path, key, depth)
                if not key.get("keys"):
                    note = f"set in the stored config and kept as it is: {key['legacy']}"
                    out.append(indented(Static(note, classes="field-note", markup=False), depth + 1))
                else:
                    inner = current if isinstance(current, Mapping) else {}
                    out += self._rows(key["keys"], inner, path + ".", depth + 1)
            elif kind == "objects":
                out += heading(path, key, depth)
                entries = current if isinstance(current, list) else []
                self._counts[path] = len(entries)
                for i, entry in enumerate(entries):
                    remove = f"rm-{field_id(f'{path}[{i}]')[2:]}"
                    self._buttons[remove] = ("remove", path, i)
                    head = Horizontal(Static(f"{name} #{i + 1}", classes="item-name"),
                                      Button("remove", id=remove, compact=True), classes="field-row")
                    out.append(indented(head, depth + 1))
                    out += self._rows(key["keys"], entry if isinstance(entry, Mapping) else {},
                                      f"{path}[{i}].", depth + 2)
                add = f"add-{field_id(path)[2:]}"
                self._buttons[add] = ("add", path, len(entries))
                out.append(indented(Button(f"+ add {name} entry", id=add, compact=True, classes="add-item"),
                                     depth + 1))
            else:
                out += self._field(path, key, current, depth)
        return out

    def _field(self, path: str, key: Key, value: Any, depth: int) -> list[Widget]:
        self._fields[field_id(path)] = (path, key)
        widget = input_for(path, key, value, path in self._secrets)
        label = key["name"] + (" *" if key.get("required") else "")
        lines = row(label, widget, error_id(path), self._width - 2 * depth)
        return [indented(line, depth) for line in lines]

    async def _rerender(self, focus: str = "") -> None:
        box = self.query_one("#config-rows", Vertical)
        await box.remove_children()
        await box.mount_all(self._config_rows())
        for label in self.query(".head-name").results(Label):  # one column for the whole form
            label.styles.width = self._width
        self.query_one(".dialog-title", Label).update(self._title())
        if focus and (target := self.query(f"#{focus}")):
            target.first().focus()

    # --- reading ----------------------------------------------------------------------------------

    def _read(self, path: str, key: Key, errors: dict[str, str]) -> Any:
        found = self.query(f"#{field_id(path)}")
        if not found:
            return None  # not offered (a legacy key that is not set)
        widget = found.first()
        if isinstance(widget, Checkbox):
            return True if widget.value else None
        if isinstance(widget, Select):
            return None if widget.value is Select.BLANK else widget.value
        if isinstance(widget, Input):
            try:
                return from_text(key["kind"], widget.value)
            except FieldError as exc:
                errors[path] = str(exc)
        return None

    def config(self, keep_empty_items: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
        """(the config the form says, problems found before asking the server: path -> message)."""
        errors: dict[str, str] = {}
        schema = self._schema
        if schema is None:
            text = self.query_one("#h-config", Input).value.strip() if self.query("#h-config") else ""
            try:
                parsed = json.loads(text or "{}")
            except json.JSONDecodeError as exc:
                return {}, {"h-config": f"not JSON: {exc}"}
            return (parsed, {}) if isinstance(parsed, dict) else ({}, {"h-config": "not a JSON object"})
        found = collect(schema["keys"], self._value, lambda p, k: self._read(p, k, errors),
                        lambda p: self._counts.get(p, 0), keep_empty_items=keep_empty_items)
        return found, errors

    def body(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The API request: id, type and name (new), name (edit), the config, the test login."""
        config, errors = self.config()
        body: dict[str, Any] = {"name": self.query_one(f"#{_HEAD['name']}", Input).value.strip(),
                                "config": config}
        if self._edit is None:
            body["id"] = self.query_one(f"#{_HEAD['id']}", Input).value.strip()
            body["type"] = self._type
        for field in ("test_username", "test_password"):
            if found := self.query(f"#{_HEAD[field]}"):
                widget = found.first()
                if isinstance(widget, Input) and widget.value:
                    body[field] = widget.value
        return body, errors

    # --- events -----------------------------------------------------------------------------------

    def on_descendant_focus(self, event: DescendantFocus) -> None:
        wid = event.widget.id or ""
        known = self._fields.get(wid)
        hint = describe(*known) if known else _HEAD_HELP.get(wid, "")
        if wid in self._buttons:
            verb, path, index = self._buttons[wid]
            hint = f"{path}: add an entry" if verb == "add" else f"{path}[{index}]: remove this entry"
        self.query_one("#form-hint", Static).update(hint)

    async def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id != _HEAD["type"] or self._edit is not None:
            return
        chosen = "" if event.value is Select.BLANK else str(event.value)
        if chosen != self._type:
            self._type, self._value = chosen, {}
            await self._rerender()

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        bid = event.button.id or ""
        if bid == "cancel":
            self.dismiss(None)
        elif bid == "test":
            self.action_test()
        elif bid == "save":
            self.action_save()
        elif bid in self._buttons:
            verb, path, index = self._buttons[bid]
            self._value, _ = self.config(keep_empty_items=True)
            entries = list_at(self._value, path)
            if verb == "add":
                entries.append({})
                keys = self._keys_of(path)
                focus = field_id(f"{path}[{len(entries) - 1}].{keys[0]['name']}") if keys else ""
            else:
                del entries[index]
                focus = f"add-{field_id(path)[2:]}"
            await self._rerender(focus)

    def _keys_of(self, path: str) -> list[Key]:
        schema = self._schema
        return keys_at(list(schema["keys"]), path) if schema else []

    # --- talking to the server --------------------------------------------------------------------

    def action_test(self) -> None:
        self._send(save=False)

    def action_save(self) -> None:
        self._send(save=True)

    def _send(self, save: bool) -> None:
        if self._busy:
            return
        if not self._type:
            self.show_problems([{"path": "type", "message": "choose a type first"}], "")
            return
        body, errors = self.body()
        if errors:
            self.show_problems([{"path": _server_path(p), "message": m} for p, m in errors.items()], "")
            return
        self._busy = True
        self._status(Text("testing against the upstream…", style="italic"))
        self.run_worker(self._call(body, save), group="connector-form", exclusive=True)

    async def _call(self, body: dict[str, Any], save: bool) -> None:
        item = f"/v1/connectors/{quote(str(self._edit['id']), safe='')}" if self._edit else ""
        try:
            if save:
                result = await (self._api.call("PATCH", item, body) if self._edit
                                else self._api.call("POST", "/v1/connectors", body))
                self.dismiss(result)
                return
            result = await self._api.call("POST", f"{item}/validate" if item else "/v1/connectors/validate",
                                          body)
            if result["ok"]:
                self.show_problems([], "")
                self._status(Text(f"✓ test passed: {result['message']}", style="green"))
            else:
                self.show_problems(result.get("problems") or [], result["message"])
        except AdminAPIError as exc:
            self.show_problems(exc.problems, exc.message)
        except AdminUnavailable as exc:
            self.show_problems([], str(exc))
        finally:
            self._busy = False

    def show_problems(self, problems: list[dict[str, str]], message: str) -> None:
        """Each problem under the field it names (or its block); the rest, or `message`, below."""
        for box in self.query(".field-error").results(Static):
            box.update("")
            box.add_class("hidden")
        placed: dict[str, list[str]] = {}
        loose: list[str] = []
        first: Widget | None = None
        for problem in problems:
            target = self._error_box(problem.get("path", ""))
            if target is None:
                loose.append(problem.get("message", ""))
                continue
            placed.setdefault(target.id or "", []).append(problem.get("message", ""))
            target.update("\n".join(f"↳ {m}" for m in placed[target.id or ""]))
            target.remove_class("hidden")
            first = first or target
        if loose or not placed:
            text = "\n".join(dict.fromkeys(loose)) or message
            self._status(Text(f"✗ {text}", style="bold red") if text else Text(""))
        else:
            count = sum(len(v) for v in placed.values())
            self._status(Text(f"✗ {count} problem{'s' if count > 1 else ''}: see the marked fields; "
                              "nothing was saved", style="bold red"))
        if first is not None:
            box_id = first.id or ""
            field = self.query(f"#{box_id[1:] if box_id.startswith('eh-') else 'f-' + box_id[2:]}")
            field_or_box: Widget = field.first() if field else first
            field_or_box.scroll_visible()
            if field and field_or_box.focusable:
                field_or_box.focus()

    def _error_box(self, path: str) -> Static | None:
        """The error line for a server path: "id", "name", "type", "config.userSearch.baseDN"..."""
        if path in _HEAD:
            wanted = [f"e{_HEAD[path]}"]
        elif path.startswith("config."):
            parts = path[len("config."):].split(".")
            wanted = []
            for n in range(len(parts), 0, -1):
                prefix = ".".join(parts[:n])
                wanted += [error_id(prefix), error_id(prefix.rsplit("[", 1)[0])]
        elif path == "h-config":
            wanted = ["eh-config"]
        else:
            return None
        for box_id in wanted:
            found = self.query(f"#{box_id}")
            if found and isinstance(found.first(), Static):
                return found.first(Static)
        return None

    def _status(self, text: Text) -> None:
        box = self.query_one("#form-status", Static)
        box.update(text)
        box.set_class(not text.plain, "hidden")


def _server_path(form_path: str) -> str:
    return form_path if form_path.startswith("h-") else f"config.{form_path}"

