"""Modal dialogs: confirm, a small form, and a message (a secret shown once). They answer via dismiss()."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

__all__ = ["ConfirmDialog", "FormDialog", "FormField", "MessageDialog"]


class ConfirmDialog(ModalScreen[bool]):
    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel"), Binding("y", "dismiss(True)", "Yes")]

    def __init__(self, question: str, yes: str = "Delete") -> None:
        super().__init__(classes="dialog-screen")
        self._question, self._yes = question, yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._question, classes="dialog-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self._yes} (y)", variant="error", id="yes")
                yield Button("Cancel (esc)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # enter must not delete by accident

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    value: str = ""
    kind: str = "text"  # text | secret | bool | list
    placeholder: str = ""


class FormDialog(ModalScreen[dict[str, Any] | None]):
    """A form of inputs; answers {name: value} (lists split on commas, bools as bools), or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"), Binding("ctrl+s", "submit", "Save")]

    def __init__(self, title: str, fields: list[FormField], submit: str = "Save") -> None:
        super().__init__(classes="dialog-screen")
        self._title, self._fields, self._submit = title, fields, submit

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog form"):
            yield Label(self._title, classes="dialog-title")
            with VerticalScroll(classes="form-fields"):
                for f in self._fields:
                    if f.kind == "bool":
                        yield Checkbox(f.label, value=f.value == "true", id=f"f-{_dom(f.name)}")
                        continue
                    yield Label(f.label, classes="field-label")
                    yield Input(f.value, placeholder=f.placeholder, password=f.kind == "secret",
                                id=f"f-{_dom(f.name)}")
            yield Static("", id="form-error", classes="error")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self._submit} (ctrl+s)", variant="primary", id="submit")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        first = self.query("Input, Checkbox").first()
        first.focus()

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in self._fields:
            widget = self.query_one(f"#f-{_dom(f.name)}")
            if isinstance(widget, Checkbox):
                out[f.name] = widget.value
            elif isinstance(widget, Input):
                text = widget.value.strip()
                out[f.name] = [p.strip() for p in text.split(",") if p.strip()] if f.kind == "list" else text
        return out

    def action_submit(self) -> None:
        self.dismiss(self.values())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            self.action_submit()
        else:
            self.dismiss(None)


class MessageDialog(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter", "dismiss(None)", "Close")]

    def __init__(self, title: str, text: str) -> None:
        super().__init__(classes="dialog-screen")
        self._title, self._text = title, text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._title, classes="dialog-title")
            yield Static(self._text, classes="dialog-text", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close (enter)", variant="primary", id="close")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)


def _dom(name: str) -> str:
    return name.replace(".", "--")
