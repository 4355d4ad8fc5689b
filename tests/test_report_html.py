"""The HTML report of the quickstart recipe: one offline file under 2 MB, checked in a real browser.

The browser is Debian's ``chromium`` (``.ci/run`` installs it where missing), driven by Playwright
with ``executable_path``; nothing downloads a browser. A screenshot is kept in
``$AEINTERP_TEST_ARTIFACTS`` (default ``test-artifacts/`` at the repository root).
"""

from __future__ import annotations

import os
import re
import shutil
from importlib import resources
from pathlib import Path

import pytest

from aeinterp.runner import Runner

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
MAX_BYTES = 2 * 1024 * 1024
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> Path:  # noqa: ANN001
    """The quickstart recipe as written (fewer training epochs): every step and figure of the real report."""
    out = tmp_path_factory.mktemp("quickstart")
    outcome = Runner(quiet=True).run_file(QUICKSTART, out=out, overrides=["model.train.epochs=30"])
    assert outcome.ok, outcome.failures
    return out / "report.html"


def test_quickstart_report_is_one_offline_file_under_2_mb(quickstart: Path) -> None:
    size = quickstart.stat().st_size
    assert size < MAX_BYTES, f"report.html is {size / 2**20:.2f} MB"
    html = quickstart.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)  # nothing fetched
    assert "<link" not in html and "@import" not in html and "<script src" not in html
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'<img[^>]+src="([^"]+)"', html))
    ids = set(re.findall(r'id="([^"]+)"', html))
    assert {h for h in re.findall(r'href="#([^"]+)"', html)} <= ids  # every table-of-contents link lands
    for alias in ("permutation", "zero_ablation", "deepshap", "mutual_information", "reconstruction"):
        assert f'id="step-{alias}"' in html
    assert html.count('class="latent-view"') == 4  # one section per latent of the quickstart


def test_templates_ship_with_the_package() -> None:
    folder = resources.files("aeinterp.report") / "templates"
    assert {p.name for p in folder.iterdir()} >= {"report.html.j2", "report.css", "report.js"}
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "report/templates/*" in pyproject and re.search(r'"jinja2>=', pyproject)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def test_report_in_a_real_browser(quickstart: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (`apt-get install -y chromium`; .ci/run does it as root)")
    from playwright.sync_api import sync_playwright

    artifacts = Path(os.environ.get("AEINTERP_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            requests: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            page.goto(quickstart.as_uri())
            page.wait_for_load_state("load")
            assert errors == [] and requests == []

            # sorting reorders a table: the permutation step's per-target table by total importance
            table = "#top-permutation"

            def column(i: int) -> list[str]:
                return page.eval_on_selector_all(f"{table} tbody tr", f"rows => rows.map(r => r.cells[{i}].getAttribute('data-v'))")

            before = [float(v) for v in column(1)]
            page.click(f"{table} thead th:nth-child(2)")
            ascending = [float(v) for v in column(1)]
            assert ascending == sorted(before) and page.get_attribute(f"{table} thead th:nth-child(2)", "aria-sort") == "ascending"
            page.click(f"{table} thead th:nth-child(2)")
            assert [float(v) for v in column(1)] == sorted(before, reverse=True)
            assert sorted(before) != before or sorted(before, reverse=True) != before  # an order actually changed

            # filtering hides rows
            page.fill("input[data-for='latent-table']", "z2")
            visible = page.eval_on_selector_all("#latent-table tbody tr", "rows => rows.filter(r => r.style.display !== 'none').length")
            assert visible == 1

            # the latent selector switches content
            assert page.is_visible("section.latent-view[data-latent='z0']")
            page.select_option("#latent-select", "z2")
            assert page.is_visible("section.latent-view[data-latent='z2']") and not page.is_visible("section.latent-view[data-latent='z0']")
            cards = page.inner_text("section.latent-view[data-latent='z2']")
            assert "permutation" in cards and "deepshap" in cards

            # hover values on heatmaps
            cell = page.locator("#step-permutation ~ table.hm td[data-tip]").first
            cell.hover()
            assert page.is_visible("#tip")
            tip = page.inner_text("#tip")
            assert re.search(r"^z\d · .+: -?\d", tip), tip

            # the full matrix is a click away
            page.click("button[data-matrix='m-permutation']")
            assert page.locator("#m-permutation-table table thead th").count() == 1 + 4  # feature + every latent
            assert page.locator("#m-permutation-table table tbody tr").count() == 30

            page.click("button[data-matrix='m-permutation']")  # folded again
            page.select_option("#latent-select", "z0")
            page.evaluate("document.getElementById('latents').scrollIntoView()")
            page.screenshot(path=str(artifacts / "report_quickstart.png"), full_page=False)
            assert errors == [], errors
        finally:
            browser.close()
    assert (artifacts / "report_quickstart.png").stat().st_size > 10_000


@pytest.mark.slow  # a browser and the quickstart run (~30 s on a loaded machine)
def test_latent_pages_in_a_real_browser(quickstart: Path) -> None:
    """The report opens on the latent pages: tabs switch them, each has its four sections, offline, no errors."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (`apt-get install -y chromium`; .ci/run does it as root)")
    from playwright.sync_api import sync_playwright

    html = quickstart.read_text()
    assert html.count("data-latent-page=") == 4 and 'id="code"' in html
    assert html.index('id="latents"') < html.index('id="steps-list"')  # the latents come before the steps
    artifacts = Path(os.environ.get("AEINTERP_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            requests: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            page.goto(quickstart.as_uri())
            page.wait_for_load_state("load")
            assert page.is_visible("[data-latent-page='z0']") and not page.is_visible("[data-latent-page='z2']")
            assert page.get_attribute("button[data-latent-tab='z0']", "aria-selected") == "true"
            page.click("button[data-latent-tab='z2']")
            assert page.is_visible("[data-latent-page='z2']") and not page.is_visible("[data-latent-page='z0']")
            assert page.get_attribute("button[data-latent-tab='z2']", "aria-selected") == "true"
            assert page.input_value("#latent-select") == "z2"
            text = page.inner_text("[data-latent-page='z2']")
            for heading in ("What drives it", "What it does to the output", "When it is high", "Relations"):
                assert heading in text
            assert "consensus:" in text and "top-activating samples" in text
            assert page.locator("[data-latent-page='z2'] svg.hist rect").count() == 30
            page.click("a.sub[data-latent-link='z1']")  # the table of contents switches too
            assert page.is_visible("[data-latent-page='z1']")
            assert "total correlation" in page.inner_text("#code ~ .code-page")
            page.evaluate("document.getElementById('latents').scrollIntoView()")
            page.screenshot(path=str(artifacts / "report_latent_pages.png"), full_page=False)
            assert errors == [] and requests == [], (errors, requests)
        finally:
            browser.close()
