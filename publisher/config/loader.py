"""Reading config.yaml: ${ENV} substitution, YAML positions, and errors that name file, line, key and fix."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, cast

import yaml
from pydantic import BaseModel, ValidationError

from publisher.config.schema import Config
from publisher.errors import ConfigError
from publisher.providers.registry import provider_names
from publisher.sources.registry import kind_names, source_kinds

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _substitute_env(node: yaml.Node, missing: list[tuple[str, yaml.Node]]) -> None:
    """Replace ${NAME} and ${NAME:-default} in scalar values, in place, remembering what is unset."""
    if isinstance(node, yaml.ScalarNode) and isinstance(node.value, str) and "${" in node.value:

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = os.environ.get(name)
            if value is None:
                if default is None:
                    missing.append((name, node))
                    return ""
                return default
            return value

        node.value = _ENV_PATTERN.sub(replace, node.value)
        if node.tag == "tag:yaml.org,2002:str" or node.style:
            return
        # an unquoted value that was only a variable is taken as a string
        node.tag = "tag:yaml.org,2002:str"
    elif isinstance(node, yaml.MappingNode):
        for _key, value in node.value:
            _substitute_env(value, missing)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _substitute_env(item, missing)


def _node_at(root: yaml.Node | None, loc: tuple[int | str, ...]) -> tuple[yaml.Node | None, bool]:
    """Find the YAML node for a pydantic error location. Returns (node, found_exactly)."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part or (part == "from_address" and key.value == "from"):
                    node = value
                    break
            else:
                return node, False
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node, False
            node = node.value[part]
        else:
            # discriminated union tags ("feed", "smtp") appear in loc but not in the YAML
            continue
    return node, True


def _key_node(root: yaml.Node | None, loc: tuple[int | str, ...]) -> yaml.Node | None:
    """The node of the key itself (for unknown keys, whose value node we have too)."""
    parent, _ = _node_at(root, loc[:-1])
    if isinstance(parent, yaml.MappingNode):
        for key, _value in parent.value:
            if key.value == loc[-1]:
                return cast(yaml.Node, key)
    return None


def _allowed_keys(loc: tuple[int | str, ...], data: Any) -> list[str]:
    """Field names allowed at the parent of loc, used for 'did you mean' hints."""
    model: Any = Config
    value = data
    for part in loc[:-1]:
        if isinstance(part, int):
            value = value[part] if isinstance(value, list) and part < len(value) else None
            continue
        if isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
            annotation = model.model_fields[part].annotation
            value = value.get(part) if isinstance(value, dict) else None
            model = _model_for(annotation, value)
        else:
            kind_model = _model_for(model, value)
            model = kind_model
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or name for name, f in model.model_fields.items() if name != "base_dir"]
    return []


def _model_for(annotation: Any, value: Any) -> Any:
    """Pick the model class out of list[...] / unions, using 'kind' for tagged unions."""
    args = getattr(annotation, "__args__", None) or getattr(annotation, "__metadata__", None)
    origin = getattr(annotation, "__origin__", None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if origin is not None and args:
        if origin in (list, dict):
            return _model_for(args[-1], value)
        if hasattr(annotation, "__metadata__"):
            return _model_for(annotation.__origin__, value)
    if args:
        candidates = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        for candidate in candidates:
            kind = candidate.model_fields.get("kind")
            if kind and isinstance(value, dict) and value.get("kind") in getattr(kind.annotation, "__args__", ()):
                return candidate
        if len(candidates) == 1:
            return candidates[0]
    return annotation


_MAIL_KINDS = ("outbox", "smtp")  # the built-in transports; the providers come from their registry


def _tags() -> set[str]:
    """Discriminator tags ("feed", "smtp") that pydantic puts in an error's loc."""
    return {*kind_names(), *_MAIL_KINDS, *provider_names()}


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _tags():
            continue  # discriminator tags are not keys the operator wrote
        else:
            out += ("." if out else "") + ("from" if part == "from_address" else str(part))
    return out


def _describe(error: Any, root: yaml.Node | None, data: Any, source: str) -> str:
    loc = tuple(error["loc"])
    kind = error["type"]
    key = _dotted(loc) or "(top level)"
    if kind == "extra_forbidden":
        node = _key_node(root, loc) or _node_at(root, loc)[0]
        allowed = _allowed_keys(loc, data)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed here: {', '.join(allowed)}"
        what = f"unknown key {loc[-1]!r}"
    elif kind == "missing":
        node, _ = _node_at(root, loc[:-1])
        what = "is required but missing"
        hint = f"add {str(loc[-1]).replace('from_address', 'from')!r} here"
    elif kind == "union_tag_invalid" or kind == "union_tag_not_found":
        node, _ = _node_at(root, loc)
        what = error["msg"]
        hint = "set kind: to one of " + str(error.get("ctx", {}).get("expected_tags", "the listed kinds"))
        if loc and loc[0] == "sources":
            hint = "set kind: to one of " + "; ".join(f"{k.name} ({k.summary})" for k in source_kinds().values())
    else:
        node, _ = _node_at(root, loc)
        what = error["msg"].removeprefix("Value error, ")
        expected = {
            "int_parsing": "write a whole number",
            "float_parsing": "write a number",
            "bool_parsing": "write true or false",
            "string_type": "write text (quote it if it looks like a number)",
            "list_type": "write a list (- item per line, or [a, b])",
            "dict_type": "write a mapping of key: value lines",
            "model_type": "write a mapping of key: value lines",
            "literal_error": "pick one of the values listed",
            "string_pattern_mismatch": "see the pattern above",
        }
        hint = expected.get(kind, "" if kind == "value_error" else "see the README's config.yaml section")
    line = f":{node.start_mark.line + 1}" if node is not None else ""
    return f"{source}{line}: {key}: {what}" + (f" (hint: {hint})" if hint else "")


def load_config(path: str | Path) -> Config:
    """Read, substitute ${ENV}, validate. Raises ConfigError listing every problem found."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError([f"{source}: no such file (hint: pass --config PATH, or copy config.yaml)"]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{source}: cannot read it: {exc}"]) from exc
    return parse_config(text, source=source, base_dir=path.resolve().parent)


def parse_config(text: str, *, source: str = "config.yaml", base_dir: Path | None = None) -> Config:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ConfigError(
            [f"{source}{where}: not valid YAML: {exc.problem} (hint: check indentation and quoting)"]
        ) from exc
    except yaml.YAMLError as exc:  # a ReaderError (a control character, say) carries no mark
        raise ConfigError([f"{source}: not valid YAML: {exc} (hint: remove control characters)"]) from exc
    if root is None:
        raise ConfigError([f"{source}: the file is empty (hint: start from the example config.yaml)"])
    missing: list[tuple[str, yaml.Node]] = []
    _substitute_env(root, missing)
    if missing:
        raise ConfigError(
            [
                f"{source}:{node.start_mark.line + 1}: environment variable {name} is not set "
                f"(hint: export {name}=..., or write ${{{name}:-default}})"
                for name, node in missing
            ]
        )
    try:
        data = _construct(root)
    except yaml.MarkedYAMLError as exc:  # a tag PyYAML cannot build ("=" reads as !!value, "!!python/...")
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ConfigError(
            [f"{source}{where}: not valid config YAML: {exc.problem} (hint: quote the value)"]
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError([f"{source}:1: the top level must be a mapping of sections (site:, editions:, ...)"])
    try:
        config = Config.model_validate({**data, "base_dir": base_dir or Path(".")})
    except ValidationError as exc:
        raise ConfigError([_describe(err, root, data, source) for err in exc.errors()]) from exc
    if config.mail.broker is not None and config.store_url.startswith("sqlite"):
        node = _key_node(root, ("mail", "broker")) or _node_at(root, ("mail", "broker"))[0]
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        raise ConfigError([
            f"{source}{line}: mail.broker: workers on several machines need a shared store, and store.url is "
            "SQLite (hint: set store.url to postgresql+psycopg://USER@HOST/DB, or remove mail.broker to send "
            "from this one process)"
        ])
    return config


def _construct(root: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(root)
    finally:
        loader.dispose()
