"""The base of every settings model: unknown keys refused, values frozen once loaded.

Its own module so that a source kind, mail provider or feed format can declare its settings model
beside its code without importing the whole schema (which imports the registries).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
