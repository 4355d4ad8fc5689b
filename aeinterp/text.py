"""Text that reaches a terminal: control characters shown, never obeyed.

Feature names come from data files, error texts from plugins and models,
recipe keys from YAML: any of them can hold ESC/CSI sequences (colours,
cursor moves, screen clears), OSC sequences (window title, OSC 52 clipboard
writes), C1 controls (``0x9b`` is a one-byte CSI), BEL or BS. aeinterp prints
such text escaped (``\\x1b]0;X\\x07``), in one place:

- :func:`terminal_safe` escapes one string;
- :func:`safe_console` makes a ``rich`` console escape every piece of text
  it prints (its own styling and cursor controls are untouched), so the terminal
  report, ``aeinterp report``, step-failure lines, validate's messages and the
  CLI's errors all pass through it however they were built.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["terminal_safe", "safe_console", "UNSAFE"]

#: what is escaped: C0 controls but newline and tab, DEL, C1 controls, and the
#: Unicode bidirectional overrides/isolates (they reorder what the user reads)
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def terminal_safe(text: Any) -> str:
    """``str(text)`` with every control character written as an escape (``\\x1b``, ``\\x9b``, ``\\u202e``); newlines and tabs kept."""
    text = text if isinstance(text, str) else str(text)
    return UNSAFE.sub(_escape, text)


def _safe_segments(buffer: Iterable[Any]) -> Iterable[Any]:
    from rich.segment import Segment

    for segment in buffer:
        text, style, control = segment
        if control or not UNSAFE.search(text):
            yield segment
        else:
            yield Segment(terminal_safe(text), style, control)


def safe_console(console: Any) -> Any:
    """``console`` (a ``rich.console.Console``), made to escape control characters in all text it prints; returns it.

    Only the text segments are changed: the console's own style codes and
    cursor controls (progress bars) still work. Calling it twice is harmless.
    """
    if console is None or getattr(console, "_aeinterp_safe", False):
        return console
    render = console._render_buffer  # rich's one place where segments become the characters written

    def _render_buffer(buffer: Iterable[Any]) -> str:
        return render(_safe_segments(buffer))

    console._render_buffer = _render_buffer
    console._aeinterp_safe = True
    return console


_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_SCRIPT_UNSAFE = re.compile("[<>&\u2028\u2029]")


def script_json(value: Any, **dumps: Any) -> str:
    """JSON of ``value`` safe inside an HTML ``<script>`` element: ``<``, ``>`` and ``&`` (and U+2028/9) as ``\\u`` escapes.

    Nothing in the text can then end the element (``</script>``), open a comment
    (``<!--``, which switches the HTML tokenizer into "script data escaped"
    state) or form an entity; ``JSON.parse`` reads back the same strings.
    """
    import json

    return _SCRIPT_UNSAFE.sub(lambda m: _SCRIPT_ESCAPES[m.group()], json.dumps(value, **dumps))
