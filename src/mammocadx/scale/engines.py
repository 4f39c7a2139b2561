"""Where the featurizer runs: the engine registry (in the style of timm's model registry).

``local`` (the default) runs in this process and needs nothing more; ``ray``
runs on a local Ray or a cluster (``pip install 'mammocadx[ray]'``). A new
engine registers a factory here and implements
:class:`~mammocadx.features.featurizer.FeatureEngine`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mammocadx.errors import ConfigError

_ENGINES: dict[str, Callable[..., Any]] = {}


def register_engine(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register an engine factory under ``name``."""
    def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
        _ENGINES[name] = factory
        return factory
    return deco


def list_engines() -> list[str]:
    """Registered engine names (``local`` first)."""
    return sorted(_ENGINES, key=lambda n: (n != "local", n))


def create_engine(name: str, **options: Any) -> Any:
    """The engine ``name`` built with ``options`` (``None`` for ``local``: the featurizer runs in this process).

    Raises
    ------
    ConfigError
        Unknown engine, or options given to the local engine.
    """
    if name not in _ENGINES:
        raise ConfigError(f"unknown engine {name!r} (known: {', '.join(list_engines())})")
    return _ENGINES[name](**options)


@register_engine("local")
def _local(**options: Any) -> None:
    given = sorted(k for k, v in options.items() if v is not None)
    if given:
        raise ConfigError(f"{', '.join('--' + k for k in given)}: only with --engine ray")
    return None


@register_engine("ray")
def _ray(**options: Any) -> Any:
    from mammocadx.scale.ray_engine import RayEngine, require_ray

    require_ray()  # checked when the engine is chosen, before any output folder or long work
    return RayEngine(**{k: v for k, v in options.items() if v is not None})
