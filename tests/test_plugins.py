"""Plugin discovery, the registry's checks, switches, and a real third-party package."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import aeinterp
from aeinterp import Explainer, RegistrationError
from aeinterp.plugins.manager import PluginHost, PluginWarning
from aeinterp.plugins.registry import ExplainerRegistry
from tests.fixtures import test_plugins as tp

ROOT = Path(__file__).resolve().parent.parent


def test_builtin_explainers_come_from_installed_entry_points() -> None:
    eps = {ep.name: ep for ep in entry_points(group="aeinterp")}
    assert "perturbation" in eps and eps["perturbation"].dist.name == "aeinterp"
    host = PluginHost(autoload=True)
    entry = host.registry["permutation"]
    assert entry.distribution == "aeinterp" and entry.version == aeinterp.__version__
    assert "zero_ablation" in host.registry


def test_every_builtin_plugin_enters_through_its_entry_point() -> None:
    """Each package under plugins/*/src is declared in the aeinterp distribution's own metadata and loads."""
    registered = {ep.value: ep for ep in entry_points(group="aeinterp") if ep.dist is not None and ep.dist.name == "aeinterp"}
    host = PluginHost(autoload=True)
    loaded = {i.name for i in host.infos if i.status == "loaded" and i.distribution == "aeinterp"}
    packages = sorted(p.name for p in (ROOT / "plugins").glob("*/src/*") if (p / "__init__.py").exists())
    assert len(packages) >= 7
    for package in packages:
        assert package in registered, f"{package} is not declared as an aeinterp entry point of the aeinterp distribution"
        assert registered[package].name in loaded, f"{package} did not load"


def test_core_imports_no_explainer() -> None:
    code = "import sys, aeinterp, aeinterp.runner, aeinterp.cli; print([m for m in sys.modules if m.startswith('aeinterp_') or m in ('shap', 'pyoperon', 'pysr', 'captum')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_discovering_every_installed_plugin_imports_no_heavy_library() -> None:
    code = (
        "import sys; from aeinterp.plugins.manager import PluginHost; h = PluginHost();"
        "assert len(h.registry) >= 2, h.infos;"
        "print([m for m in ('shap', 'captum', 'sklearn', 'numba', 'pyoperon', 'pysr', 'sympy', 'umap', 'matplotlib') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_autoload_loads_only_given_plugins() -> None:
    host = PluginHost(autoload=False, plugins=[tp.crashing_plugin])
    assert host.registry.names() == ["crashing", "follower", "interrupting", "latent_only"]


def test_block_and_allow_by_distribution_or_entry_point(monkeypatch) -> None:  # noqa: ANN001
    assert "permutation" not in PluginHost(block=["perturbation"]).registry
    assert len(PluginHost(block=["aeinterp"]).registry) == 0  # the distribution blocks every built-in
    monkeypatch.setenv("AEINTERP_BLOCK_PLUGINS", "perturbation")
    host = PluginHost()
    assert "permutation" not in host.registry
    assert any(i.status == "blocked" and i.name == "perturbation" and i.distribution == "aeinterp" for i in host.infos)
    monkeypatch.delenv("AEINTERP_BLOCK_PLUGINS")
    monkeypatch.setenv("AEINTERP_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert len(PluginHost().registry) == 0


def test_registry_refuses_what_is_not_an_explainer() -> None:
    reg = ExplainerRegistry()
    with pytest.raises(RegistrationError, match="not a subclass of aeinterp.Explainer"):
        reg.add(object)  # type: ignore[arg-type]

    class NoName(Explainer):
        def explain(self, model, data, *, target, rng):  # noqa: ANN001, ANN202
            return None

    with pytest.raises(RegistrationError, match="without a valid `name`"):
        reg.add(NoName)

    class Abstract(Explainer):
        name = "abstract"

    with pytest.raises(RegistrationError, match="does not implement explain"):
        reg.add(Abstract)


def test_a_broken_plugin_warns_with_its_name_and_the_others_work() -> None:
    with pytest.warns(PluginWarning) as caught:
        host = PluginHost(plugins=[tp.bad_registration_plugin, tp.raising_registration_plugin])
    messages = [str(w.message) for w in caught]
    assert any("bad_registration_plugin" in m and "not a subclass" in m for m in messages)
    assert any("raising_registration_plugin" in m and "plugin bug at registration" in m for m in messages)
    assert "permutation" in host.registry
    failed = {i.name: i.error for i in host.failures}
    assert "plugin bug at registration" in failed["raising_registration_plugin"]


def test_two_plugins_claiming_one_name_is_an_error_naming_both() -> None:
    with pytest.warns(PluginWarning, match="claimed by two plugins"):
        host = PluginHost(plugins=[tp.duplicate_plugin])
    assert "permutation" not in host.registry
    message = host.registry.unknown_message("permutation")
    assert "aeinterp " in message and "duplicate_plugin" in message


@pytest.fixture(scope="module")
def thirdparty_site(tmp_path_factory) -> Path:  # noqa: ANN001
    """pip-install the fixture package (a real wheel build) into a private folder."""
    target = tmp_path_factory.mktemp("site")
    for package in ("thirdparty", "broken"):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "--target",
                str(target),
                str(ROOT / "tests/fixtures" / package),
            ],
            check=True,
            capture_output=True,
        )
    return target


def _cli(args: list[str], site: Path, cwd: Path, plugins: str = "aeinterp-hello,perturbation") -> subprocess.CompletedProcess:
    # only the plugins this test is about, whatever else is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "AEINTERP_PLUGINS": plugins, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "aeinterp.cli", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_third_party_package_is_listed_and_usable_from_a_recipe(thirdparty_site: Path, tmp_path: Path) -> None:
    listed = _cli(["plugins"], thirdparty_site, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "hello_correlation" in listed.stdout and "aeinterp-hello 1.2.3" in listed.stdout
    (tmp_path / "r.yaml").write_text(
        "data: {builtin: synthetic_tabular}\n"
        "model: {builtin: mlp, latent_dim: 3, train: {epochs: 5}}\n"
        "explainers:\n  - name: hello_correlation\n  - name: permutation\n    params: {repeats: 1}\n"
        "report: {html: false, plots: false}\noutput: out\n"
    )
    ran = _cli(["run", "r.yaml", "--quiet"], thirdparty_site, tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    import json

    results = json.loads((tmp_path / "out/results.json").read_text())
    hello = results["explainers"][0]
    assert hello["name"] == "hello_correlation" and hello["distribution"] == "aeinterp-hello" and hello["status"] == "ok"
    assert len(hello["importance"]) == 3 and len(hello["importance"][0]) == 8


def test_a_plugin_that_fails_to_import_is_named_and_the_others_work(thirdparty_site: Path, tmp_path: Path) -> None:
    listed = _cli(["plugins"], thirdparty_site, tmp_path, plugins="aeinterp-broken,perturbation")
    assert listed.returncode == 1  # a broken plugin is worth a non-zero exit here
    assert "plugin 'broken' from aeinterp-broken 0.0.1: failed to import aeinterp_broken: ModuleNotFoundError" in listed.stderr
    assert "permutation" in listed.stdout and "Traceback" not in listed.stderr + listed.stdout
    (tmp_path / "r.yaml").write_text(
        "data: {builtin: wine}\nmodel: {builtin: mlp, latent_dim: 2, train: {epochs: 2}}\n"
        "explainers: [{name: zero_ablation}]\nreport: {html: false, plots: false}\noutput: out\n"
    )
    ran = _cli(["run", "r.yaml", "--quiet"], thirdparty_site, tmp_path, plugins="aeinterp-broken,perturbation")
    assert ran.returncode == 0 and "aeinterp-broken" in ran.stderr


def test_trace_prints_hook_calls(capsys) -> None:  # noqa: ANN001
    PluginHost(autoload=False, plugins=[tp.crashing_plugin], trace=True)
    assert "aeinterp_register_explainers" in capsys.readouterr().err
