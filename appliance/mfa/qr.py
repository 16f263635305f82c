"""The enrolment QR code, drawn here (segno) as an SVG data: URI: no script, no outside service."""

from __future__ import annotations

import segno


def qr_data_uri(text: str) -> str:
    """An <img src> for a QR code of `text`; dark on white so that it scans on the dark theme too."""
    code = segno.make(text, error="m")
    return str(code.svg_data_uri(scale=5, border=4, dark="#000000", light="#ffffff"))
