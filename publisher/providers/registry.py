"""The mail providers, found rather than listed: each module of publisher.providers that declares
`KIND = ProviderKind(...)` is one, and so is each `publisher.mail_providers` entry point of an
installed package (as publisher.sources.registry does for source kinds).
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Union

from pydantic import Field

from publisher.plugins import discover
from publisher.providers.base import ProviderKind

ENTRY_POINT_GROUP = "publisher.mail_providers"


@cache
def provider_kinds() -> dict[str, ProviderKind]:
    """Every provider by name: the package's own first (in module name order), then entry points."""
    import publisher.providers as package

    return discover(package, ProviderKind, ENTRY_POINT_GROUP)


def provider_names() -> list[str]:
    return list(provider_kinds())


def provider_kind(name: str) -> ProviderKind:
    kind = provider_kinds().get(name)
    if kind is None:
        raise KeyError(f"unknown mail provider {name!r}; known: {', '.join(provider_names())}")
    return kind


def provider_settings_models() -> tuple[Any, ...]:
    """The providers' settings models, for the config's transport union."""
    return tuple(kind.settings for kind in provider_kinds().values())


def transport_settings_union(*built_in: Any) -> Any:
    """The pydantic type of mail.transport: the built-in transports' models and every provider's,
    told apart by `kind`."""
    models = (*built_in, *provider_settings_models())
    return Annotated[Union[models], Field(discriminator="kind")]  # noqa: UP007 (a runtime tuple)
