"""The documentation site builds strictly and offline, and says what the code says.

One ``mkdocs build --strict`` (session-scoped: it executes the example notebooks)
into a temporary folder, with every proxy pointing at a closed port so that any
network access fails the build; then the generated pages are checked against the
live plugin registry, the recipe schema and the docstrings, never against
hard-coded names. ``AEINTERP_DOCS_SITE=DIR`` checks a site already built
from this tree (``mkdocs build --strict -d DIR``) instead of building one.
"""

from __future__ import annotations

import html
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
pytest.importorskip("material", reason="the docs extra is not installed: pip install -e '.[docs]'")
pytest.importorskip("mkdocstrings_handlers.python", reason="the docs extra is not installed")
pytest.importorskip("mkdocs_jupyter", reason="the docs extra is not installed")

CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, so any request fails at once


def _text(page: Path) -> str:
    """A page's visible text, tags stripped, entities decoded."""
    raw = page.read_text(encoding="utf-8")
    raw = re.sub(r"<(script|style)\b.*?</\1>", " ", raw, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", raw))


def _squeezed(text: str) -> str:
    """Without whitespace and backticks: rendered Markdown splits text at tags (code spans, links)."""
    return re.sub(r"[\s`]+", "", text)


def _registry():  # noqa: ANN202
    from aeinterp.plugins import PluginHost

    return PluginHost().registry


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    prebuilt = os.environ.get("AEINTERP_DOCS_SITE")  # a site already built from this tree: check it, do not rebuild
    if prebuilt:
        return Path(prebuilt)
    out = tmp_path_factory.mktemp("site")
    env = {
        **os.environ,
        "HTTP_PROXY": CLOSED,
        "HTTPS_PROXY": CLOSED,
        "http_proxy": CLOSED,
        "https_proxy": CLOSED,
        "ALL_PROXY": CLOSED,
        "NO_PROXY": "",
        "no_proxy": "",
        "NO_MKDOCS_2_WARNING": "1",
        "AEINTERP_DOCS_EXECUTE": "true",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return out


@pytest.mark.slow  # builds the whole site and executes the notebooks (about a minute on 2 cores)
def test_every_registered_explainer_has_a_page_with_each_of_its_params(site: Path) -> None:
    registry = _registry()
    assert len(registry) > 0
    index = _text(site / "explainers" / "index.html")
    for entry in registry:
        page = site / "explainers" / entry.name / "index.html"
        assert page.exists(), f"no page for explainer {entry.name}"
        text = _text(page)
        for field, info in entry.cls.Params.model_fields.items():
            assert field in text, f"{entry.name}'s page lacks its param {field!r}"
            if info.description:
                assert _squeezed(info.description)[:60] in _squeezed(text), f"{entry.name}.{field}: description missing"
        for target in entry.cls.capabilities.targets:
            assert target in text
        assert entry.name in index, f"the explainer index lacks {entry.name}"


@pytest.mark.slow
def test_recipe_reference_lists_the_schema_sections_and_their_keys(site: Path) -> None:
    from aeinterp.recipe import recipe_schema

    schema = recipe_schema(_registry())
    text = _text(site / "recipes" / "index.html")
    for key in schema["properties"]:
        assert re.search(rf"\b{re.escape(key)}\b", text), f"recipe reference lacks top-level key {key!r}"
    for name in ("DataSection", "ModelSection"):
        for key in schema["$defs"][name]["properties"]:
            assert key in text, f"recipe reference lacks {name}.{key}"
    assert "Results (stable contract)" in text and "importance" in text  # the README section, included


@pytest.mark.slow
def test_api_reference_shows_the_docstrings(site: Path) -> None:
    import aeinterp

    def first_line(obj: object) -> str:  # reST ``literals`` render as code: compare without the markup
        return _squeezed(inspect.getdoc(obj).splitlines()[0].replace("``", ""))[:60]

    text = _squeezed(_text(site / "api" / "index.html"))
    assert first_line(aeinterp.explain) in text
    assert first_line(aeinterp.explain_all) in text
    results = _squeezed(_text(site / "api" / "results" / "index.html"))
    assert first_line(aeinterp.Explanation) in results and "Explanations" in results
    classes = _squeezed(_text(site / "api" / "explainers" / "index.html"))
    for name in ("Explainer", "ExplainerParams", "Capabilities", "Target", "Model", "TorchAutoencoder", "run_explainer", "Runner"):
        obj = getattr(aeinterp, name)
        assert name in classes
        if obj.__dict__.get("__doc__") if isinstance(obj, type) else obj.__doc__:  # its own docstring, not str's or Enum's
            assert first_line(obj) in classes, f"{name}'s docstring"
    toolkit = _text(site / "api" / "toolkit" / "index.html")
    assert "perturbation_effects" in toolkit and "ChunkedExplainer" in toolkit


@pytest.mark.slow
def test_plugin_guide_includes_contributing_and_every_hook(site: Path) -> None:
    from aeinterp.plugins import hookspecs

    text = _text(site / "plugins" / "index.html")
    hooks = [name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("aeinterp_")]
    assert hooks
    for hook in hooks:
        assert hook in text
    assert "ExplainerConformance" in text  # the testing section of CONTRIBUTING.md came along


@pytest.mark.slow
def test_example_notebooks_are_executed_into_pages_with_figures(site: Path) -> None:
    notebooks = sorted((ROOT / "examples").glob("*.ipynb"))
    assert notebooks
    for nb in notebooks:
        page = site / "examples" / nb.stem / "index.html"
        assert page.exists(), nb.name
        raw = page.read_text(encoding="utf-8")
        assert re.search(r'<img[^>]+src="data:image/png;base64,', raw), f"{nb.name}: no output image"
        assert "Traceback" not in raw and re.search(r'class="[^"]*jp-RenderedText', raw), f"{nb.name}: no printed output"
    quick = _text(site / "examples" / "quickstart" / "index.html")
    assert "max additivity error" in quick  # an output the notebook printed in this build


@pytest.mark.slow
def test_no_page_loads_anything_from_the_network(site: Path) -> None:
    pages = list(site.rglob("*.html"))
    assert len(pages) > 10
    external = re.compile(r'<(?:link|script|img|iframe)\b[^>]*\b(?:href|src)\s*=\s*["\'](?:https?:)?//', re.I)
    css_import = re.compile(r"@import\s+url\(\s*[\"']?(?:https?:)?//|fonts\.googleapis|fonts\.gstatic|cdnjs|jsdelivr|unpkg", re.I)
    for page in pages:
        raw = page.read_text(encoding="utf-8")
        assert not external.search(raw), f"{page.relative_to(site)} loads {external.search(raw).group(0)}"
        assert not css_import.search(raw), f"{page.relative_to(site)} references {css_import.search(raw).group(0)}"
    for css in site.rglob("*.css"):
        assert not css_import.search(css.read_text(encoding="utf-8", errors="replace")), css.name


def test_hand_written_nav_pages_exist_and_new_pages_need_no_nav_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fast: every page mkdocs.yml names exists, and the hook lists pages the nav omits."""
    sys.path.insert(0, str(DOCS))
    try:
        import _hooks
    finally:
        sys.path.remove(str(DOCS))
    loader = type("Loader", (yaml.SafeLoader,), {})
    loader.add_constructor("!ENV", lambda ld, node: ld.construct_sequence(node)[-1])  # mkdocs' env-var tag: its default
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=loader)  # noqa: S506 (a SafeLoader subclass)
    named = [p for p in _hooks._nav_files(config["nav"]) if p.endswith(".md")]
    for p in named:
        assert (DOCS / p).exists(), p

    class Config:
        nav = config["nav"]

    (tmp_path / "a-page-from-another-branch.md").write_text("# A page nobody listed\n")
    (tmp_path / "index.md").write_text("# Home\n")
    monkeypatch.setattr(_hooks, "DOCS", tmp_path)  # docs/ as another branch leaves it
    nav = _hooks.on_config(Config()).nav
    _hooks.on_post_build(None)
    listed = _hooks._nav_files(nav)
    assert {"Guides": ["a-page-from-another-branch.md"]} in nav
    assert {f"explainers/{e.name}.md" for e in _registry()} <= listed
    assert {f"examples/{nb.name}" for nb in (ROOT / "examples").glob("*.ipynb")} <= listed


def test_explainer_page_examples_are_valid_params() -> None:
    """Fast: every `explainers:` step in a YAML example of an explainer page validates against its Params."""
    registry = _registry()
    checked = 0
    for page in sorted((DOCS / "explainers").glob("*.md")):
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), flags=re.S):
            doc = yaml.safe_load(block)
            for step in (doc or {}).get("explainers", []):
                params = step.get("params", {})
                registry[step["name"]].cls.Params.model_validate(params)
                checked += 1
    assert checked >= len(registry)
