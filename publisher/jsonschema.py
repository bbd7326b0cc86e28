"""The JSON Schema of config.yaml, generated from the settings models, for editors (yaml-language-server)."""

from __future__ import annotations

import json
from typing import Any

from publisher.config import Config

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def config_schema() -> dict[str, Any]:
    """The schema as a dict: keys as written in config.yaml (`from`, not from_address), no internal fields."""
    schema = Config.model_json_schema(by_alias=True, mode="validation")
    schema["properties"].pop("base_dir", None)
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "publisher config.yaml",
        "description": "Every key is explained in README.md (config.yaml, key by key). "
        "${ENV_NAME} and ${ENV_NAME:-default} are replaced from the environment before validation.",
        **schema,
    }


def config_schema_text() -> str:
    return json.dumps(config_schema(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"
