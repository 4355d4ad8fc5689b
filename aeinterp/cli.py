"""The ``aeinterp`` command line. Only this module turns exceptions into exit codes.

Exit codes: 0 success; 1 some explainer steps failed (the others' results are
kept); 2 bad input (recipe, data, model, arguments); 3 an unexpected internal
error (a bug: ``AEINTERP_TRACEBACK=1`` shows its traceback); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from ._version import __version__
from .errors import AeinterpError, clip
from .starters import STARTERS, init_recipe, shipped_recipes
from .text import safe_console, terminal_safe

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILED_STEPS, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class _Help(argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help (when it has a real one); examples kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            not (action.default is None or action.default is False or action.default == [] or action.default == argparse.SUPPRESS)
            and "default" not in text
        ):
            text += " (default: %(default)s)"
        return text


def _sub(sub: Any, name: str, help: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}", formatter_class=_Help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aeinterp",
        description="Explain autoencoders from YAML recipes.",
        formatter_class=_Help,
        epilog="examples:\n  aeinterp init quickstart && aeinterp run quickstart.yaml\n  aeinterp plugins\n  aeinterp COMMAND --help",
    )
    parser.add_argument("--version", action="version", version=f"aeinterp {__version__}")
    plug = parser.add_argument_group("plugins")
    plug.add_argument(
        "--no-plugin-autoload", action="store_true", help="load no entry-point plugins (env AEINTERP_DISABLE_PLUGIN_AUTOLOAD=1)"
    )
    plug.add_argument(
        "--allow-plugins", metavar="A,B", help="load only these plugins (entry-point or distribution names; env AEINTERP_PLUGINS)"
    )
    plug.add_argument("--block-plugins", metavar="A,B", help="do not load these plugins (env AEINTERP_BLOCK_PLUGINS)")
    plug.add_argument("--trace-plugins", action="store_true", help="print every hook call (env AEINTERP_TRACE_PLUGINS=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    init = _sub(
        sub,
        "init",
        "write a shipped example recipe (and its data file, if it has one) into this folder",
        "aeinterp init quickstart && aeinterp run quickstart.yaml",
    )
    init.add_argument("name", nargs="?", default="quickstart", help="which example: " + ", ".join(STARTERS) + ", or any name --list shows")
    init.add_argument("--list", action="store_true", help="list the shipped recipes")
    init.add_argument("--force", action="store_true", help="overwrite files that exist")
    init.add_argument("-d", "--dir", type=Path, default=Path("."), help="the folder to write to")

    run = _sub(
        sub,
        "run",
        "run a recipe and write results.json, PNGs and report.html",
        "aeinterp run quickstart.yaml -o out/quick --set explainers.0.params.repeats=3",
    )
    run.add_argument("recipe", type=Path, help="the YAML recipe")
    run.add_argument("-o", "--out", type=Path, help="output folder (default: the recipe's `output`)")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a recipe value, e.g. --set explainers.0.params.repeats=3 (repeatable)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars or terminal report")
    run.add_argument(
        "--executor", choices=["local", "ray"], help="where steps run (overrides the recipe's executor.kind; ray needs aeinterp[ray])"
    )
    run.add_argument("--traceback", action="store_true", help="print the full traceback of failing steps")
    run.add_argument(
        "--device", metavar="DEVICE", help="auto | cpu | cuda | cuda:<index> | mps (overrides the recipe's `device`, default auto)"
    )
    run.add_argument(
        "--no-cache",
        action="store_true",
        help="recompute every step and retrain the built-in model (nothing read from or written to the cache)",
    )
    run.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="cache folder (default $AEINTERP_CACHE_DIR or ~/.cache/aeinterp; overrides the recipe's `cache`)",
    )
    run.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="abandon a step after this many seconds and record it as failed (steps' own `timeout:` wins; default: none)",
    )
    run.add_argument(
        "--trust-factory",
        dest="trusted_factories",
        action="append",
        default=[],
        metavar="MODULE:NAME",
        help="let the recipe call this factory although it is no nn.Module class nor marked @aeinterp.factory (repeatable)",
    )

    val = _sub(sub, "validate", "check a recipe (both passes) without loading data or running it", "aeinterp validate quickstart.yaml")
    val.add_argument("recipe", type=Path, help="the YAML recipe")
    val.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a recipe value (repeatable)"
    )

    plugins = _sub(sub, "plugins", "list installed explainers with their distribution, version and capabilities", "aeinterp plugins --json")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")

    train = _sub(
        sub,
        "train",
        "train a built-in autoencoder and save it",
        "aeinterp train --data builtin:wine --latent-dim 3 --option hidden=[16] -o wine.pt",
    )
    train.add_argument(
        "--data", required=True, help="builtin:NAME (breast_cancer, wine, digits, sines, synthetic_tabular) or a .csv/.npy/.npz path"
    )
    train.add_argument("--kind", choices=["tabular", "image", "sequence"], help="data kind when the array shape is ambiguous")
    train.add_argument("--arch", default="auto", help="auto | mlp | conv2d | conv1d | lstm (auto picks by data kind)")
    train.add_argument("--latent-dim", type=int, required=True, help="size of the code")
    train.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="architecture option, value as YAML, e.g. --option hidden=[64,32] --option variational=true",
    )
    train.add_argument("--epochs", type=int, default=100, help="training epochs")
    train.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    train.add_argument("--batch-size", type=int, default=64, help="mini-batch size")
    train.add_argument("--seed", type=int, default=0, help="seed of the split, the initial weights and the batches")
    train.add_argument(
        "--standardize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="standardize features (default: on for bundled tabular sets)",
    )
    train.add_argument("-o", "--output", "--out", type=Path, required=True, help="where to save the model (.pt)")
    train.add_argument("--torchscript", action="store_true", help="save as TorchScript (encode/decode methods) instead of a checkpoint")
    train.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help="where to train: auto | cpu | cuda | cuda:<index> | mps (default auto); the saved model loads on any device",
    )

    rep = _sub(sub, "report", "re-render the reports of a finished run from its output folder", "aeinterp report out/quickstart --top-k 8")
    rep.add_argument("out", type=Path, help="the output folder of a run (holds results.json)")
    rep.add_argument("--no-html", action="store_true", help="terminal report and PNGs only")
    rep.add_argument("--top-k", type=int, default=5, help="features shown per target")
    rep.add_argument(
        "--targets",
        default=None,
        help="targets shown in the terminal: names (z0,z3) or a count of the most important (e.g. 8); default all explained",
    )

    show = _sub(
        sub,
        "show",
        "print one latent's page (what drives it, what it does, when it is high, relations) or the code page, from a finished run",
        "aeinterp show out/quickstart --latent z3",
    )
    show.add_argument("out", type=Path, help="the output folder of a run (holds results.json)")
    show.add_argument(
        "--latent", metavar="NAME", help="the latent to show (e.g. z3); default: every latent's consensus line and the code page"
    )

    schema = _sub(
        sub,
        "schema",
        "print (or write) the JSON Schema of recipes, including every installed explainer's params",
        "aeinterp schema -o recipe.schema.json   # then start a recipe with: # yaml-language-server: $schema=recipe.schema.json",
    )
    schema.add_argument("-o", "--output", type=Path, help="write the schema to this file instead of printing it")

    comp = _sub(
        sub,
        "completion",
        "print a shell completion script (needs `pip install 'aeinterp[completion]'`)",
        'eval "$(aeinterp completion bash)"   # or add it to ~/.bashrc',
    )
    comp.add_argument("shell", choices=["bash", "zsh", "tcsh"], help="the shell to complete in")
    return parser


def _runner(args: argparse.Namespace, console: Console, quiet: bool = False):  # noqa: ANN202
    from .runner import Runner

    split = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None  # noqa: E731
    cache = False if getattr(args, "no_cache", False) else (args.cache_dir.resolve() if getattr(args, "cache_dir", None) else None)
    timeout = getattr(args, "timeout", None)
    if timeout is not None and not timeout > 0:
        raise AeinterpError(f"--timeout must be a positive number of seconds, got {timeout}")
    return Runner(
        device=getattr(args, "device", None),
        cache=cache,
        autoload=False if args.no_plugin_autoload else None,
        allow=split(args.allow_plugins),
        block=split(args.block_plugins),
        trace=True if args.trace_plugins else None,
        console=console,
        quiet=quiet,
        timeout=timeout,
        trusted_factories=getattr(args, "trusted_factories", ()),
    )


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    runner = _runner(args, console, quiet=args.quiet)
    overrides = [*args.overrides, f"executor.kind={args.executor}"] if args.executor else args.overrides
    outcome = runner.run_file(args.recipe, out=args.out, overrides=overrides)
    if args.traceback:
        for f in outcome.failures:
            if f.get("traceback"):
                console.print(f"--- {f['alias']} ---\n{f['traceback']}", markup=False, highlight=False)
    html = next((p for p in outcome.reports if p.suffix == ".html"), None)
    console.print(
        f"results: {outcome.out_dir / 'results.json'}" + (f"   report: {html}" if html else ""),
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if outcome.failures:
        console.print(f"[red]{len(outcome.failures)} step(s) failed[/red]; the other results are kept. Run with --traceback for details.")
        return EXIT_FAILED_STEPS
    return EXIT_OK


def _cmd_init(args: argparse.Namespace, console: Console) -> int:
    if args.list:
        console.print("examples: " + ", ".join(STARTERS) + "\nall recipes: " + ", ".join(sorted(shipped_recipes())), highlight=False)
        return EXIT_OK
    folder, written = init_recipe(args.name, args.dir, force=args.force)
    recipe = next(f for f in written if f.endswith(".yaml"))
    console.print(
        f"wrote {', '.join(written)} in {folder}; run it with: aeinterp run {folder / recipe if str(folder) != '.' else recipe}",
        highlight=False,
        markup=False,
    )
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace, console: Console) -> int:
    runner = _runner(args, console, quiet=True)
    _, steps = runner.validate(args.recipe, args.overrides)
    console.print(
        f"[green]{escape(str(args.recipe))} is valid[/green]: "
        + escape(", ".join(f"{s.alias} ({s.explainer.name}, {s.target.value})" for s in steps)),
        highlight=False,
    )
    return EXIT_OK


def _cmd_plugins(args: argparse.Namespace, console: Console) -> int:
    runner = _runner(args, console, quiet=True)
    reg, infos = runner.registry, runner.host.infos
    if args.json:
        payload = {
            "explainers": [
                {
                    "name": e.name,
                    "distribution": e.distribution,
                    "version": e.version,
                    "summary": e.summary,
                    "capabilities": e.cls.capabilities.to_json(),
                }
                for e in reg
            ],
            "plugins": [i.to_json() for i in infos],
        }
        console.out(json.dumps(payload, indent=1), highlight=False)
    else:
        from rich.table import Table

        table = Table(title="installed explainers", title_justify="left", show_lines=True)
        table.add_column("explainer", no_wrap=True)
        table.add_column("what it does")
        for e in reg:
            c = e.cls.capabilities
            flags = [f"targets: {', '.join(sorted(c.targets))}", f"data: {', '.join(sorted(c.data_kinds))}"]
            flags += ["needs gradients"] * c.needs_gradients + ["per-sample attributions"] * c.local
            dot = " · " if (console.encoding or "").lower().startswith("utf") else "; "
            table.add_row(
                f"[bold]{escape(e.name)}[/bold]\n[dim]{escape(e.distribution)} {escape(e.version)}[/dim]",
                f"{escape(e.summary)}\n[dim]{escape(dot.join(flags))}[/dim]",
            )
        console.print(table)
        for i in infos:
            if i.status == "failed":
                console.print(
                    f"[red]failed[/red] plugin {escape(i.name)} ({escape(i.distribution)} {escape(i.version)}): {escape(i.error)}",
                    highlight=False,
                )
            elif i.status == "blocked":
                console.print(
                    f"[yellow]blocked[/yellow] plugin {escape(i.name)} ({escape(i.distribution)} {escape(i.version)})", highlight=False
                )
            elif i.error:
                console.print(
                    f"[yellow]conflict[/yellow] plugin {escape(i.name)} ({escape(i.distribution)} {escape(i.version)}): {escape(i.error)}",
                    highlight=False,
                )
    return EXIT_FAILED_STEPS if runner.host.failures else EXIT_OK


def _cmd_train(args: argparse.Namespace, console: Console) -> int:
    import torch

    from .io.datasets import load_dataset
    from .model import select_code
    from .models.loading import build_builtin
    from .models.training import TrainConfig
    from .progress import NullProgress, RichProgress
    from .recipe.sections import SEED_MAX

    for flag, value, ok in (
        ("--epochs", args.epochs, args.epochs >= 1),
        ("--batch-size", args.batch_size, args.batch_size >= 1),
        ("--lr", args.lr, args.lr > 0 and args.lr < float("inf")),
        ("--latent-dim", args.latent_dim, args.latent_dim >= 1),
        ("--seed", args.seed, 0 <= args.seed <= SEED_MAX),
    ):
        if not ok:
            limit = f"between 0 and {SEED_MAX}" if flag == "--seed" else ("a positive finite number" if flag == "--lr" else "at least 1")
            raise AeinterpError(f"{flag} must be {limit}, got {value}")
    output = args.output
    if output.is_dir():
        raise AeinterpError(f"-o {output} is a folder; give the model file to write, e.g. {output / 'model.pt'}")
    for parent in output.parents:
        if parent.exists():
            if not parent.is_dir():
                raise AeinterpError(f"-o {output}: {parent} is a file, not a folder")
            break
    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            raise AeinterpError(f"--option {item!r}: expected KEY=VALUE")
        from .recipe.yamlsafe import load_yaml

        options[key.strip()] = load_yaml(value, what=f"--option {clip(item, 80)!r}")[0]
    source = {"builtin": args.data.split(":", 1)[1]} if args.data.startswith("builtin:") else {"path": Path(args.data)}
    from .device import resolve_device

    device = resolve_device(args.device)
    data = load_dataset(**source, kind=args.kind, standardize=args.standardize, split_seed=args.seed)
    with RichProgress(console, prefix="train: ") if console.is_terminal else NullProgress() as progress:
        module, result = build_builtin(
            args.arch,
            data,
            latent_dim=args.latent_dim,
            options=options,
            train=TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed),
            progress=progress,
            device=device,
        )
    module = module.cpu()  # saved from the CPU: it loads anywhere, and `device:` moves it at run time
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AeinterpError(f"cannot create the folder of -o {args.output}: {exc.strerror or exc}") from None
    if args.torchscript:
        x = torch.as_tensor(data.x_explain[:4])
        z = select_code(module.encode(x))  # type: ignore[operator]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.trace_module(module, {"encode": x, "decode": z})
        scripted.save(str(args.output))
    else:
        torch.save(module.checkpoint(), args.output)  # type: ignore[operator]
    console.print(
        f"saved {module.architecture} autoencoder (latent_dim={args.latent_dim}) to {args.output}; "
        f"held-out reconstruction MSE {result.val_error:.4f} after {args.epochs} epochs",
        highlight=False,
        soft_wrap=True,
    )
    return EXIT_OK


def _cmd_report(args: argparse.Namespace, console: Console) -> int:
    from types import SimpleNamespace

    from .report import render_reports
    from .run.lock import OutputLock
    from .run.results import load_results

    results = load_results(args.out)
    runner = _runner(args, console, quiet=True)
    with OutputLock(results.out_dir):  # it rewrites the figures and report.html: never under a run still writing there
        paths = render_reports(
            results,
            runner.registry,
            console=console,
            options=SimpleNamespace(terminal=True, plots=True, html=not args.no_html, top_k=args.top_k, targets=args.targets),
        )
    console.print(f"wrote {len(paths)} files in {args.out}", markup=False, highlight=False)
    return EXIT_FAILED_STEPS if results.failures else EXIT_OK


def _cmd_show(args: argparse.Namespace, console: Console) -> int:
    from .report import latent_source
    from .report.code_page import build_code_page
    from .report.latent import build_page
    from .run.results import load_results

    source = latent_source(load_results(args.out))
    if args.latent:
        console.print(build_page(source, args.latent))
        return EXIT_OK
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title="latents: consensus top inputs and agreement (aeinterp show OUT --latent NAME for one page)",
        title_justify="left",
        box=None,
        padding=(0, 1, 0, 0),
    )
    for col in ("latent", "drives", "agreement", "flags"):
        table.add_column(col, overflow="fold")
    for name in source.names():
        page = build_page(source, name)
        table.add_row(
            escape(name),
            escape(", ".join(page.core) or "-"),
            "-" if page.agreement is None else f"{page.agreement:.2f}",
            escape("; ".join(f.split(":")[0] for f in page.flags)),
        )
    console.print(table)
    if source.codes is not None and len(source.codes.latent_names) >= 2:
        console.print(build_code_page(source))
    return EXIT_OK


def _cmd_schema(args: argparse.Namespace, console: Console) -> int:
    from .recipe.schema import recipe_schema

    text = json.dumps(recipe_schema(_runner(args, console, quiet=True).registry), indent=1)
    if args.output is None:
        console.out(text, highlight=False)
        return EXIT_OK
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    except OSError as exc:
        raise AeinterpError(f"cannot write the schema to {args.output}: {exc}") from None
    console.print(
        f"wrote {args.output}; start a recipe with `# yaml-language-server: $schema={args.output}` for completion and hover docs",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    return EXIT_OK


def _cmd_completion(args: argparse.Namespace, console: Console) -> int:
    from .errors import require

    shtab = require("shtab", "completion", "shell completion")
    console.out(shtab.complete(build_parser(), shell=args.shell), highlight=False)
    return EXIT_OK


COMMANDS = {
    "run": _cmd_run,
    "validate": _cmd_validate,
    "plugins": _cmd_plugins,
    "train": _cmd_train,
    "report": _cmd_report,
    "show": _cmd_show,
    "schema": _cmd_schema,
    "completion": _cmd_completion,
    "init": _cmd_init,
}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"warning: {terminal_safe(message)}", file=sys.stderr)


def _plain_streams() -> None:
    """On terminals that cannot print every character (ASCII, latin-1), replace what they cannot show."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("_", "-")
        if not encoding.startswith("utf") and hasattr(stream, "reconfigure"):
            with contextlib.suppress(Exception):
                stream.reconfigure(errors="replace")


def main(argv: Sequence[str] | None = None, *, console: Console | None = None) -> int:
    """Entry point of the ``aeinterp`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    if console is None:
        _plain_streams()
    console = safe_console(console or Console())  # every text printed shows control characters escaped
    err = safe_console(Console(stderr=True)) if console.file is sys.stdout else console
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        try:
            return COMMANDS[args.command](args, console)
        except AeinterpError as exc:
            err.print(f"[red]error:[/red] {escape(terminal_safe(clip(str(exc), 20_000)))}", highlight=False, soft_wrap=True)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt as exc:
            results = getattr(exc, "results", None)
            where = f": finished steps are in {escape(str(results))}" if results else ": no results were written"
            if not hasattr(exc, "results"):
                where = ""
            err.print(f"[yellow]interrupted[/yellow]{where}", highlight=False, soft_wrap=True)
            return EXIT_INTERRUPTED
        except Exception as exc:
            if os.environ.get("AEINTERP_TRACEBACK"):
                raise
            err.print(
                f"[red]internal error:[/red] {type(exc).__name__}: {escape(terminal_safe(clip(str(exc), 2000)))}\n"
                "This is a bug in aeinterp or a plugin; set AEINTERP_TRACEBACK=1 to see the traceback and please report it.",
                highlight=False,
                soft_wrap=True,
            )
            return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
