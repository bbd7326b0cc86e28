"""Finding what a registry holds: the declarations in a package's own modules, then the entry points
of installed packages (Pelican's readers, datasette's built-ins-through-hooks). Used by the source
kinds (publisher.sources.registry) and the mail providers (publisher.providers.registry)."""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points
from types import ModuleType
from typing import Protocol, TypeVar


class Declared(Protocol):
    @property
    def name(self) -> str: ...


K = TypeVar("K", bound=Declared)


def discover(package: ModuleType, declaration: type[K], group: str) -> dict[str, K]:
    """Every `KIND` of type `declaration` by name: the package's modules first (in module name
    order), then the entry points of `group`; the first of a name wins."""
    found: dict[str, K] = {}
    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        declared = getattr(importlib.import_module(f"{package.__name__}.{module.name}"), "KIND", None)
        if isinstance(declared, declaration):
            found.setdefault(declared.name, declared)
    for point in entry_points(group=group):
        declared = point.load()
        if isinstance(declared, declaration):
            found.setdefault(declared.name, declared)
    return found
