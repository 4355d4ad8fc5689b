"""MkDocs hooks: the parts of the documentation that are generated from the code at build time.

Registered in ``mkdocs.yml`` under ``hooks:``. Nothing here is copied into the
site (``exclude_docs``). What it does:

* **Explainer pages.** The registry is loaded the way every run loads it
  (:class:`aeinterp.plugins.PluginHost`), so an explainer installed from another
  distribution gets a page too. ``docs/explainers/<name>.md`` holds the prose
  (what it computes, exactness, cost); where the marker
  ``<!-- aeinterp:params -->`` stands (or at the end of the page) the hook
  writes the explainer's capabilities and a table of its params, read from
  ``Params.model_json_schema()``. An explainer without a hand-written page gets
  a generated one from its docstring. ``<!-- aeinterp:explainer-table -->``
  becomes the table of every registered explainer.
* **Recipe reference.** ``<!-- aeinterp:recipe-schema -->`` becomes one table
  per section of :func:`aeinterp.recipe.recipe_schema` (what ``aeinterp schema``
  prints).
* **Includes.** ``<!-- aeinterp:include FILE "HEADING" -->`` inserts the section
  of a repository file (e.g. CONTRIBUTING.md) that starts at that heading, so
  the plugin guide has one source.
* **Notebooks.** Every ``examples/*.ipynb`` becomes a page (``examples/<name>/``),
  which mkdocs-jupyter executes during the build.
* **Offline.** Notebook pages lose nbconvert's CDN scripts (mermaid, MathJax).
* **Navigation.** The ``Explainers`` and ``Notebooks`` sections of the nav are
  filled in here, and any ``docs/*.md`` page that the nav does not list is added
  under ``Guides``, so a new page needs no edit of ``mkdocs.yml``.
"""

from __future__ import annotations

import html
import inspect
import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"

PARAMS_MARKER = "<!-- aeinterp:params -->"
TABLE_MARKER = "<!-- aeinterp:explainer-table -->"
SCHEMA_MARKER = "<!-- aeinterp:recipe-schema -->"
INCLUDE_RE = re.compile(r'<!-- aeinterp:include (?P<file>\S+) "(?P<heading>[^"]+)" -->')

_SAVED_ENV: dict[str, str | None] = {}


@lru_cache(maxsize=1)
def _registry() -> Any:
    from aeinterp.plugins import PluginHost

    return PluginHost().registry


def _explainers() -> list[Any]:
    return sorted(_registry(), key=lambda e: e.name)


# --- JSON-schema rendering -------------------------------------------------------------------
def _cell(text: Any) -> str:
    """Text safe inside one Markdown table cell."""
    s = str(text).replace("\n", " ").strip()
    # `|` would end the cell; `{...}` at the end of a cell would be read as attr_list attributes
    return html.escape(s, quote=False).replace("|", "&#124;").replace("{", "&#123;").replace("}", "&#125;")


def _code(value: Any) -> str:
    s = value if isinstance(value, str) else json.dumps(value)
    return "`" + s.replace("|", "&#124;").replace("`", "'") + "`"


def _type(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    """A short type for a JSON-schema node: ``integer ≥ 1``, ``"a" | "b"``, ``list of string``, ``DataSection``."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        target = defs.get(name, {})
        if "enum" in target:
            return " &#124; ".join(_code(v) for v in target["enum"])
        return f"[{name}](#{name.lower()})" if name in defs and not name.startswith("Params_") else name
    if "anyOf" in schema or "oneOf" in schema:
        parts = [_type(s, defs) for s in schema.get("anyOf", schema.get("oneOf", []))]
        return " &#124; ".join(dict.fromkeys(p for p in parts if p))
    if "const" in schema:
        return _code(schema["const"])
    if "enum" in schema:
        return " &#124; ".join(_code(v) for v in schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " &#124; ".join(kind)
    if kind == "array":
        items = schema.get("items")
        if isinstance(items, dict) and any("const" in v.get("properties", {}).get("name", {}) for v in items.get("anyOf", [])):
            return "list of [explainer steps](#explainer-steps)"
        return f"list of {_type(items, defs)}" if isinstance(items, dict) and items else "list"
    if kind == "object":
        extra = schema.get("additionalProperties")
        return f"mapping of {_type(extra, defs)}" if isinstance(extra, dict) and extra else "mapping"
    text = kind or ""
    bounds = [("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")]
    limits = [f"{sym} {schema[key]}" for key, sym in bounds if key in schema]
    if limits:
        text = f"{text} {', '.join(limits)}".strip()
    return text


def _default(schema: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" not in schema:
        return ""
    return _code(schema["default"])


def properties_table(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    """A Markdown table of a JSON-schema object's properties: name, type, default, description."""
    props = schema.get("properties", {})
    if not props:
        return "*No parameters.*\n"
    required = set(schema.get("required", []))
    rows = ["| name | type | default | description |", "|---|---|---|---|"]
    for name, sub in props.items():
        rows.append(f"| `{name}` | {_type(sub, defs)} | {_default(sub, name in required)} | {_cell(sub.get('description', ''))} |")
    return "\n".join(rows) + "\n"


# --- explainer pages ----------------------------------------------------------------------------
def _capabilities(entry: Any) -> str:
    caps = entry.cls.capabilities
    rows = [
        "| capability | |",
        "|---|---|",
        f"| recipe name | `{entry.name}` |",
        f"| distribution | {_cell(entry.distribution)} {_cell(entry.version)} |",
        f"| targets | {', '.join(f'`{t}`' for t in sorted(caps.targets))} |",
        f"| data kinds | {', '.join(f'`{k}`' for k in sorted(caps.data_kinds))} |",
        f"| needs gradients | {'yes' if caps.needs_gradients else 'no'} |",
        f"| per-sample (`local`) output | {'yes' if caps.local else 'no'} |",
        f"| deterministic under a seed | {'yes' if caps.deterministic else 'no'} |",
        f"| splits into chunks | {caps.splits} |",
    ]
    return "\n".join(rows) + "\n"


def explainer_reference(entry: Any) -> str:
    """The generated part of an explainer's page: capabilities and the params table."""
    schema = entry.cls.Params.model_json_schema()
    defs = schema.get("$defs", {})
    return (
        "## Capabilities\n\n"
        + _capabilities(entry)
        + "\n## Params\n\n"
        + "Set them under the step's `params:` in a recipe, or as keyword arguments of "
        + f'`aeinterp.explain(model, X, "{entry.name}", ...)`. Unknown keys are refused. '
        + "This table is generated from the explainer's `Params` model.\n\n"
        + properties_table(schema, defs)
    )


def _generated_explainer_page(entry: Any) -> str:
    doc = inspect.cleandoc(entry.cls.__doc__ or entry.summary or "")
    return f"# `{entry.name}`\n\n{doc}\n\n{PARAMS_MARKER}\n"


def explainer_table() -> str:
    rows = ["| explainer | what it computes | targets | distribution |", "|---|---|---|---|"]
    for e in _explainers():
        targets = ", ".join(f"`{t}`" for t in sorted(e.cls.capabilities.targets))
        rows.append(f"| [`{e.name}`]({e.name}.md) | {_cell(e.summary)} | {targets} | {_cell(e.distribution)} |")
    return "\n".join(rows) + "\n"


# --- recipe reference ---------------------------------------------------------------------------
def recipe_reference() -> str:
    from aeinterp.recipe import recipe_schema

    schema = recipe_schema(_registry())
    defs = schema.get("$defs", {})
    parts = ["## Top level\n", properties_table(schema, defs)]
    # sections in the order they are first referenced, breadth first from the top level
    order: list[str] = []
    queue = [{k: v for k, v in schema.items() if k != "$defs"}]
    while queue:
        node = queue.pop(0)
        for ref in re.findall(r'"\$ref": "#/\$defs/([^"]+)"', json.dumps(node)):
            if ref not in order and not ref.startswith("Params_") and "properties" in defs.get(ref, {}):
                order.append(ref)
                queue.append(defs[ref])
    for name in order:
        sub = defs[name]
        parts.append(f"\n## {name}\n")
        if sub.get("description"):
            parts.append(_cell(sub["description"]) + "\n")
        parts.append(properties_table(sub, defs))
    parts.append(
        "\n## Explainer steps\n\nEach item of `explainers:` has `name`, optional `alias`, `targets`, `params` and "
        "`timeout`. The params of each explainer are on its page:\n\n"
        + "\n".join(f"- [`{e.name}`](explainers/{e.name}.md): {_cell(e.summary)}" for e in _explainers())
        + "\n"
    )
    return "\n".join(parts)


# --- includes -----------------------------------------------------------------------------------
def include_section(file: str, heading: str) -> str:
    """The section of a repository file from ``heading`` to the next heading of the same or a higher level."""
    lines = (ROOT / file).read_text(encoding="utf-8").splitlines()
    level = len(heading) - len(heading.lstrip("#"))
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == heading.strip())
    except StopIteration:
        raise ValueError(f"{file} has no heading {heading!r} (docs include)") from None
    end = len(lines)
    fence = False
    for i in range(start + 1, len(lines)):
        if lines[i].lstrip().startswith("```"):
            fence = not fence
        m = re.match(r"^(#+)\s", lines[i])
        if m and not fence and len(m.group(1)) <= level:
            end = i
            break
    body = lines[start + 1 : end]
    fence = False
    for i, line in enumerate(body):  # the section's own subheadings move up to sit under the including page's title
        if line.lstrip().startswith("```"):
            fence = not fence
        if not fence and re.match(r"^#+\s", line) and level > 1:
            body[i] = line[level - 1 :]
    text = "\n".join(body).strip() + "\n"
    # links written from the repository's root (README: `docs/singlecell.md`) point inside the site from docs/
    return re.sub(r"\]\(docs/", "](", text)


# --- MkDocs events ------------------------------------------------------------------------------
def _nav_files(nav: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(nav, str):
        found.add(nav)
    elif isinstance(nav, list):
        for item in nav:
            found |= _nav_files(item)
    elif isinstance(nav, dict):
        for value in nav.values():
            found |= _nav_files(value)
    return found


def _notebooks() -> list[Path]:
    return sorted(EXAMPLES.glob("*.ipynb"))


def on_config(config: Any) -> Any:
    names = [e.name for e in _explainers()]
    nav = config.nav or []
    listed = _nav_files(nav)
    for item in nav:
        if not isinstance(item, dict):
            continue
        for title in list(item):
            if title == "Explainers":
                item[title] = ["explainers/index.md", *({n: f"explainers/{n}.md"} for n in names)]
            elif title == "Notebooks":
                item[title] = [{nb.stem.replace("_", " "): nb.relative_to(ROOT).as_posix()} for nb in _notebooks()]
    # every page the nav does not name yet, under Guides (pages other branches add need no mkdocs.yml edit)
    extra = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.glob("*.md") if p.relative_to(DOCS).as_posix() not in listed)
    if extra:
        guides = next((item for item in nav if isinstance(item, dict) and "Guides" in item), None)
        if guides is None:
            guides = {"Guides": []}
            at = next((i for i, item in enumerate(nav) if isinstance(item, dict) and "Recipe reference" in item), len(nav))
            nav.insert(at, guides)
        guides["Guides"] = [*(guides["Guides"] or []), *extra]
    config.nav = nav
    # the notebooks' kernels inherit the environment: figures inline, this checkout importable
    wanted = {"MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    for key, value in wanted.items():
        _SAVED_ENV[key] = os.environ.get(key)
        os.environ[key] = value
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, which must see the notebooks
def on_files(files: Files, config: Any) -> Files:
    have = {f.src_uri for f in files}
    for entry in _explainers():
        uri = f"explainers/{entry.name}.md"
        if uri not in have:
            files.append(File.generated(config, uri, content=_generated_explainer_page(entry)))
    for nb in _notebooks():  # a real file under the repository root (mkdocs-jupyter reads it from src_dir)
        uri = nb.relative_to(ROOT).as_posix()
        if uri not in have:
            files.append(File(uri, src_dir=str(ROOT), dest_dir=config.site_dir, use_directory_urls=config.use_directory_urls))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    uri = page.file.src_uri
    m = re.fullmatch(r"explainers/(\w+)\.md", uri)
    if m and m.group(1) in _registry():
        reference = explainer_reference(_registry()[m.group(1)])
        markdown = markdown.replace(PARAMS_MARKER, reference) if PARAMS_MARKER in markdown else markdown + "\n" + reference
    if TABLE_MARKER in markdown:
        markdown = markdown.replace(TABLE_MARKER, explainer_table())
    if SCHEMA_MARKER in markdown:
        markdown = markdown.replace(SCHEMA_MARKER, recipe_reference())
    return INCLUDE_RE.sub(lambda mm: include_section(mm.group("file"), mm.group("heading")), markdown)


# nbconvert's template loads mermaid from a CDN (when a notebook has a diagram) and MathJax from
# `custom_mathjax_url` (left empty here): the site must work offline, so neither stays in the page
_CDN_SCRIPT = re.compile(r"<script\b[^>]*>(?:(?!</script>).)*?\bimport\(\s*[\"']https?://(?:(?!</script>).)*</script>", re.S)
_EMPTY_SCRIPT = re.compile(r'<script\s+src=""\s*>\s*</script>')


def on_post_page(output: str, page: Any, config: Any) -> str:
    if page.file.src_uri.endswith(".ipynb"):
        output = _EMPTY_SCRIPT.sub("", _CDN_SCRIPT.sub("", output))
    return output


def on_post_build(config: Any) -> None:
    for key, value in _SAVED_ENV.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _SAVED_ENV.clear()
