"""PEP 562 lazy attributes: a package's names that load their module on first access."""

from __future__ import annotations

from importlib import import_module


def lazy_attributes(package: str, namespace: dict, lazy: dict[str, str]):
    """``(__getattr__, __dir__)`` for ``package``: ``lazy`` maps a public name to the submodule
    (relative to ``package``) that defines it; the value is cached in ``namespace`` once loaded."""

    def __getattr__(name):
        if name in lazy:
            value = getattr(import_module(f"{package}.{lazy[name]}"), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(namespace) | set(lazy))

    return __getattr__, __dir__
