"""The widgets of a connector form's lines: a key's input by its kind, a labelled row, a block's heading."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, Select, Static

from appliance.tui.formdata import Key, error_id, field_id, placeholder, to_text

__all__ = ["heading", "indented", "input_for", "row"]


def input_for(path: str, key: Key, value: Any, secret_set: bool) -> Widget:
    """The input of one key: a box (bool), a choice (choice, and a bool that may be unset), else a
    line of text (lists comma-separated, maps key=value; a secret masked and never pre-filled)."""
    wid, kind = field_id(path), key["kind"]
    if kind == "bool" and key.get("tristate"):
        tri: Select[bool] = Select([("true", True), ("false", False)], compact=True, id=wid,
                                   prompt=f"(unset: {key.get('default') or 'default'})",
                                   value=value if isinstance(value, bool) else Select.BLANK)
        return tri
    if kind == "bool":
        return Checkbox("", value=value is True, compact=True, id=wid)
    if kind == "choice":
        pick: Select[str] = Select([(c, c) for c in key["choices"]], compact=True, id=wid,
                                   prompt=f"(unset: {key.get('default') or 'none'})",
                                   value=value if value in key["choices"] else Select.BLANK)
        return pick
    return Input(to_text(kind, value), placeholder=placeholder(key, secret_set), password=kind == "secret",
                 compact=True, id=wid)


def row(label: str, widget: Widget, error: str, width: int, *classes: str) -> list[Widget]:
    """A label `width` wide, the input beside it, and the (hidden) error line under them."""
    name = Label(label, classes=" ".join(("field-name", *classes)))
    name.styles.width = width
    return [Horizontal(name, widget, classes="field-row"),
            Static("", id=error, classes="field-error hidden", markup=False)]


def heading(path: str, key: Key, depth: int) -> list[Widget]:
    """A nested block's name and help, and its error line (problems about the block as a whole)."""
    text = Text.assemble((key["name"], "bold"), ("  " + (key.get("help") or ""), "dim"))
    return [indented(Static(text, classes="field-heading"), depth),
            indented(Static("", id=error_id(path), classes="field-error hidden", markup=False), depth)]


def indented(widget: Widget, depth: int) -> Widget:
    widget.styles.padding = (0, 0, 0, 2 * depth)
    return widget
