"""Text from data files, plugins and recipes reaching a terminal or an HTML page (issue 27, items 2 and 3).

Security tests: a control sequence in a feature name, an error text or a recipe
key is printed escaped (``\\x1b``), never obeyed, on every path that prints
(terminal report, ``aeinterp report``, step-failure lines, validate, CLI
errors); a name that looks like HTML inside the report's JSON block neither
ends the block nor changes how the page is parsed.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from aeinterp import Explainer, hookimpl
from aeinterp.cli import main
from aeinterp.runner import Runner
from aeinterp.text import UNSAFE, safe_console, script_json, terminal_safe

OSC_TITLE = "\x1b]0;PWNED\x07"
OSC52 = "\x1b]52;c;ZXZpbA==\x07"  # a clipboard write
CSI_CLEAR = "\x1b[2J\x1b[H"
C1_CSI = "\x9b31m"
BS = "abc\x08\x08\x08xyz"
PAYLOADS = [OSC_TITLE, OSC52, CSI_CLEAR, C1_CSI, BS, "\x07bell", "rtl\u202egnp.exe"]


def _obeyable(text: str) -> list[str]:
    """Control characters in ``text`` a terminal would act on (output captured from a non-terminal console has none of its own)."""
    return UNSAFE.findall(text)


def test_terminal_safe_escapes_every_control_character() -> None:
    for code in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]:
        char = chr(code)
        out = terminal_safe(f"a{char}b")
        if char in "\n\t":
            assert out == f"a{char}b"
        else:
            assert out == f"a\\x{code:02x}b" and not UNSAFE.search(out)
    assert terminal_safe(OSC_TITLE) == "\\x1b]0;PWNED\\x07"
    assert terminal_safe(terminal_safe(OSC52)) == terminal_safe(OSC52)  # idempotent: escaping twice adds nothing
    assert terminal_safe("rtl\u202egnp") == "rtl\\u202egnp"
    assert terminal_safe("naïve ü 日本") == "naïve ü 日本"  # printable text untouched


def test_safe_console_keeps_rich_styles_but_escapes_text() -> None:
    buf = io.StringIO()
    console = safe_console(Console(file=buf, force_terminal=True, color_system="truecolor", width=120))
    console.print(f"[red]name[/red] {OSC_TITLE}{C1_CSI}", highlight=False)
    out = buf.getvalue()
    assert "\x1b[31mname" in out  # rich's own colour still there
    assert out.count("\x1b") == 2 and "\x9b" not in out  # only rich's colour on and off
    assert "\\x1b]0;PWNED" in out and "\\x9b31m" in out


def _csv(folder: Path, names: list[str], n: int = 40) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, len(names)))
    header = ",".join('"' + name.replace('"', '""') + '"' for name in names)
    (folder / "d.csv").write_text(header + "\n" + "\n".join(",".join(f"{v:.5f}" for v in row) for row in x) + "\n")
    return folder / "d.csv"


def _recipe(folder: Path, explainers: str = "  - name: zero_ablation\n", terminal: bool = True) -> Path:
    path = folder / "r.yaml"
    path.write_text(
        "data: {path: d.csv}\nmodel: {builtin: mlp, latent_dim: 2, options: {hidden: [6]}, train: {epochs: 2}}\n"
        f"explainers:\n{explainers}report: {{terminal: {str(terminal).lower()}, plots: false, html: true}}\ncache: false\noutput: out\n"
    )
    return path


def _cli(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    code = main(list(argv), console=Console(file=buf, width=160))  # not a terminal: any control character in it was injected
    return code, buf.getvalue()


def test_feature_names_with_escapes_in_the_terminal_report_and_aeinterp_report(tmp_path: Path) -> None:
    """The issue's case: a CSV header ``"\\x1b]0;X\\x07",b,c`` (plus CSI, C1, BS, BEL, bidi)."""
    _csv(tmp_path, [*PAYLOADS, "plain"])
    code, out = _cli("run", str(_recipe(tmp_path)))
    assert code == 0, out
    assert _obeyable(out) == [], _obeyable(out)
    assert "\\x1b]0;PWNED" in out  # shown, escaped (rich itself drops the BEL)
    code, again = _cli("report", str(tmp_path / "out"), "--no-html")
    assert code == 0 and _obeyable(again) == [] and "\\x1b]0;PWNED" in again


class Shouting(Explainer):
    """Fails with a message full of control sequences (as a model or a library error could)."""

    name = "shouting"

    def explain(self, model, data, *, target, rng):  # noqa: ANN001
        raise ValueError(f"bad {OSC52} {CSI_CLEAR} {C1_CSI}")


class ShoutPlugin:
    @hookimpl
    def aeinterp_register_explainers(self, registry) -> None:  # noqa: ANN001
        registry.add(Shouting)


def test_step_failure_line_is_escaped(tmp_path: Path) -> None:
    _csv(tmp_path, ["a", "b", "c"])
    buf = io.StringIO()
    outcome = Runner(autoload=False, plugins=[ShoutPlugin()], console=Console(file=buf, width=200)).run_file(
        _recipe(tmp_path, "  - name: shouting\n", terminal=False)
    )
    assert len(outcome.failures) == 1
    out = buf.getvalue()
    assert "shouting" in out and _obeyable(out) == [] and "\\x1b]52;c;ZXZpbA==\\x07" in out


def test_validate_locations_and_cli_errors_are_escaped(tmp_path: Path) -> None:
    _csv(tmp_path, ["a", "b", "c"])
    bad_key = tmp_path / "bad.yaml"  # YAML's "\e" is ESC, "\a" BEL: an unknown key full of them
    bad_key.write_text(
        'data: {path: d.csv}\nmodel: {builtin: mlp, latent_dim: 2}\n"\\e]0;PWNED\\a\\e[2J": 1\nexplainers: [{name: zero_ablation}]\n'
    )
    code, out = _cli("validate", str(bad_key))
    assert code == 2 and _obeyable(out) == [] and "\\x1b]0;PWNED\\x07" in out
    missing = tmp_path / "missing.yaml"
    missing.write_text('data: {path: "no\\e]0;PWNED\\a.csv"}\nmodel: {builtin: mlp, latent_dim: 2}\nexplainers: [{name: zero_ablation}]\n')
    code, out = _cli("run", str(missing))
    assert code == 2 and _obeyable(out) == [] and "PWNED" in out


# --- HTML ---------------------------------------------------------------------------------------

HTML_NAMES = ["<!--<script>", "</script><script>alert(1)</script>", "a&amp;b", "<b>x</b>", "<!--", "-->"]


def _json_blocks(html: str) -> list[str]:
    """The content of each ``<script type="application/json">`` as the HTML tokenizer ends it (at the first ``</script``)."""
    return [m.group(1) for m in re.finditer(r'<script type="application/json"[^>]*>(.*?)</script', html, flags=re.S | re.I)]


def test_script_json_round_trips_and_holds_no_markup() -> None:
    value = {"names": [*HTML_NAMES, "\u2028line\u2029"], "v": [1.5, 2]}
    text = script_json(value)
    assert not set(text) & set("<>&\u2028\u2029")
    assert json.loads(text) == value


def test_html_names_keep_every_step_section_and_the_json_parses(tmp_path: Path) -> None:
    """The issue's case: ``<!--<script>`` in the JSON matrix block; three steps must all stay."""
    _csv(tmp_path, [*HTML_NAMES, "plain"])
    path = _recipe(
        tmp_path, "  - name: zero_ablation\n  - name: permutation\n    params: {repeats: 1}\n  - name: jacobian\n", terminal=False
    )
    code, out = _cli("run", str(path))
    assert code == 0, out
    html = (tmp_path / "out" / "report.html").read_text()
    blocks = _json_blocks(html)
    assert len(blocks) == 3
    for block in blocks:
        assert "<" not in block  # no state change of the tokenizer can start inside it
        assert json.loads(block)["cols"] == [*HTML_NAMES, "plain"]
    for alias in ("zero_ablation", "permutation", "jacobian"):
        assert f'id="step-{alias}"' in html
    assert "<script>alert(1)" not in html and "<!--<script>" not in html


@pytest.mark.slow  # starts a browser (about 5-10 s); skipped where Debian's chromium is missing
def test_html_names_in_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    _csv(tmp_path, [*HTML_NAMES, "plain"])
    path = _recipe(
        tmp_path, "  - name: zero_ablation\n  - name: permutation\n    params: {repeats: 1}\n  - name: jacobian\n", terminal=False
    )
    assert _cli("run", str(path))[0] == 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("dialog", lambda d: errors.append("dialog " + d.message))
            page.goto((tmp_path / "out" / "report.html").as_uri())
            assert page.locator("h2[id^='step-']").count() == 3
            cols = page.evaluate(
                "Array.from(document.querySelectorAll('script[type=\"application/json\"]')).map(s => JSON.parse(s.textContent).cols)"
            )
            assert all(c == [*HTML_NAMES, "plain"] for c in cols) and len(cols) == 3
            assert errors == []
        finally:
            browser.close()
