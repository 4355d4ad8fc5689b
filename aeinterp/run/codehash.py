"""The code a model runs, as a hash: part of every cached step's key (:mod:`aeinterp.run.cache`).

:func:`code_fingerprint` walks, for every submodule of a torch module:

- every class of its type's MRO (inherited ``forward`` / ``encode`` included);
- each such class's defining module: its whole source file (so a module-level
  helper a method calls, a constant, an activation chosen at import, are all
  covered), plus the source of the class itself;
- every global name the class's methods (and the functions they reference,
  transitively, also nested functions and lambdas) read: a function or class
  found there adds its source and its defining module's source; a module found
  there adds its source file;
- for code from an installed library (the standard library, torch, numpy and
  any module under ``site-packages``) the package's name and version instead
  of its files.

What it cannot see (use ``--no-cache`` / ``cache: false`` when these change):
code reached only dynamically (``getattr(obj, name)`` with a computed name,
``importlib.import_module`` at call time, ``eval``), the state of mutable
module globals changed at run time (a dict mutated after import), C
extensions rebuilt without a version change, and editable installs of a
library under ``site-packages`` whose version was not bumped. TorchScript
modules are keyed by their compiled ``code`` instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import sys
import sysconfig
import types
from pathlib import Path
from typing import Any

__all__ = ["code_fingerprint", "callable_fingerprint"]

_LIBRARY_ROOTS = tuple(
    str(Path(p).resolve()) for p in {sysconfig.get_paths().get(k, "") for k in ("stdlib", "platstdlib", "purelib", "platlib")} if p
)
_MAX_OBJECTS = 2000  # a bound on the walk (a huge import graph still hashes, just not beyond this)


def _is_library(module: types.ModuleType | None) -> bool:
    if module is None:
        return True
    if module.__name__ == "__main__":  # a script or notebook: the user's own code, hashed by its source
        return False
    name = module.__name__.split(".")[0]
    if name in sys.builtin_module_names or name in getattr(sys, "stdlib_module_names", ()) or name in ("torch", "numpy", "aeinterp"):
        return True
    file = getattr(module, "__file__", None)
    if not file:
        return True  # a built-in or namespace module: nothing to read
    path = str(Path(file).resolve())
    return "site-packages" in path or "dist-packages" in path or any(path.startswith(root + "/") for root in _LIBRARY_ROOTS)


class _Walk:
    def __init__(self) -> None:
        self.h = hashlib.blake2b(digest_size=20)
        self.seen: set[int] = set()
        self.modules: set[str] = set()
        self.classes: set[type] = set()

    def add(self, text: str) -> None:
        self.h.update(text.encode("utf-8", "surrogatepass"))
        self.h.update(b"\0")

    def module(self, module: types.ModuleType | None) -> None:
        if module is None or module.__name__ in self.modules:
            return
        self.modules.add(module.__name__)
        if _is_library(module):
            top = sys.modules.get(module.__name__.split(".")[0])
            self.add(f"lib:{module.__name__}:{getattr(top, '__version__', '')}")
            return
        self.add(f"module:{module.__name__}")
        with contextlib.suppress(OSError, TypeError):
            file = inspect.getsourcefile(module) or getattr(module, "__file__", None)
            if file:
                self.h.update(Path(file).read_bytes())

    def obj(self, value: Any) -> None:
        if id(value) in self.seen or len(self.seen) > _MAX_OBJECTS:
            return
        self.seen.add(id(value))
        if isinstance(value, types.ModuleType):
            self.module(value)
        elif isinstance(value, type):
            self.cls(value)
        elif isinstance(value, (staticmethod, classmethod)):
            self.obj(value.__func__)
        elif isinstance(value, property):
            for f in (value.fget, value.fset, value.fdel):
                if f is not None:
                    self.obj(f)
        elif isinstance(value, types.MethodType):
            self.obj(value.__func__)
        elif isinstance(value, types.FunctionType):
            self.function(value)
        elif callable(value) and not isinstance(value, types.BuiltinFunctionType):
            self.cls(type(value))  # a callable object (functools.partial, an nn.Module instance used as a helper)
            inner = getattr(value, "func", None)
            if inner is not None:
                self.obj(inner)

    def cls(self, cls: type) -> None:
        for klass in cls.__mro__:
            if klass is object or klass in self.classes:
                continue
            self.classes.add(klass)
            module = sys.modules.get(klass.__module__)
            if _is_library(module):
                self.module(module)
                continue
            self.add(f"class:{klass.__module__}.{klass.__qualname__}")
            with contextlib.suppress(OSError, TypeError):
                self.add(inspect.getsource(klass))
            self.module(module)
            for member in list(vars(klass).values()):
                if isinstance(member, (types.FunctionType, staticmethod, classmethod, property)):
                    self.obj(member)

    def function(self, fn: types.FunctionType) -> None:
        module = sys.modules.get(getattr(fn, "__module__", "") or "")
        if _is_library(module):
            self.module(module)
            return
        self.add(f"function:{fn.__module__}.{fn.__qualname__}")
        with contextlib.suppress(OSError, TypeError):
            self.add(inspect.getsource(fn))
        self.module(module)
        for cell in fn.__closure__ or ():
            with contextlib.suppress(ValueError):
                self.obj(cell.cell_contents)
        for default in (*(fn.__defaults__ or ()), *(fn.__kwdefaults__ or {}).values()):
            if callable(default):
                self.obj(default)
        self.globals(fn.__code__, fn.__globals__)

    def globals(self, code: types.CodeType, namespace: dict[str, Any]) -> None:
        for name in code.co_names:
            if name in namespace:
                value = namespace[name]
                if isinstance(value, (types.ModuleType, type, types.FunctionType)) or callable(value):
                    self.obj(value)
        for const in code.co_consts:  # nested functions, lambdas, comprehensions
            if isinstance(const, types.CodeType):
                self.globals(const, namespace)


def code_fingerprint(module: Any) -> str:
    """Hash of the code ``module`` (a torch module) and each of its submodules run (see the module docstring)."""
    walk = _Walk()
    code = getattr(module, "code", None)
    if isinstance(code, str):  # TorchScript: the compiled code is what runs
        walk.add(code)
    modules = module.modules() if hasattr(module, "modules") else [module]
    for sub in modules:
        walk.cls(type(sub))
        for hook_dict in ("_forward_hooks", "_forward_pre_hooks"):  # hooks the user registered run too
            for hook in getattr(sub, hook_dict, {}).values():
                walk.obj(hook)
    return walk.h.hexdigest()


def callable_fingerprint(fn: Any) -> str:
    """Hash of the code a plain callable (an adapter's ``encoder:`` function) runs."""
    walk = _Walk()
    walk.obj(fn)
    return walk.h.hexdigest()
