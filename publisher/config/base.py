"""The base of every settings model: unknown keys refused, values frozen once loaded.

Its own module so that a source kind, mail provider or feed format can declare its settings model
beside its code without importing the whole schema (which imports the registries).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# What readers see as an article's source ("Levant Agency"): one text, or one per language
# ({ar: وكالة ليفانت, en: Levant Agency}). Without it: the feed's own title, else the site's name.
Credit = str | dict[str, str] | None


class SourceSettingsBase(Settings):
    """What every sources[] entry has. A kind's own model narrows `kind` to its Literal name."""

    kind: str
    name: Annotated[str, Field(min_length=1)]
    enabled: bool = True
    credit: Credit = Field(
        default=None, description="the source's name for readers: a text, or one per language {ar: ..., en: ...}"
    )


class ProviderSettings(Settings):
    """What every HTTP mail provider's settings have. A provider's own model (declared beside its
    KIND in publisher.providers) narrows `kind` to its Literal name."""

    kind: str
    timeout: float = Field(default=30.0, gt=0, le=600)
    base_url: str | None = Field(default=None, description="API address; set only for a region or a test server")
    max_retry_after: float = Field(default=60.0, ge=0, description="longest 429 Retry-After waited in place")
