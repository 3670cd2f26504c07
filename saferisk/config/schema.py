"""The one config schema (saferisk/schemas/config.schema.yaml): loading, defaults, friendly errors.

`check_schema(config)` validates a plain config dict against the schema and returns a copy
with every default filled in (also inside the name -> spec maps, which Snakemake's
`validate(..., set_default=True)` does not reach). Errors name the key path and what is
allowed: `models.mlp.format: 'keras' is not allowed; choose one of: auto, onnx, ...`.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from saferisk.errors import ConfigError


def schema_path() -> Path:
    """Path of the packaged schema file (the same file the Snakefile validates with)."""
    return Path(str(resources.files("saferisk") / "schemas" / "config.schema.yaml"))


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    with open(schema_path(), encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        merged = dict(_resolve(target, root))
        merged.update({k: v for k, v in node.items() if k != "$ref"})
        return merged
    return node


def _fill_defaults(value: Any, node: dict[str, Any], root: dict[str, Any]) -> Any:
    """Copy of `value` with schema defaults inserted for missing object keys (recursively)."""
    node = _resolve(node, root)
    if isinstance(value, dict):
        out = dict(value)
        for key, sub in node.get("properties", {}).items():
            sub_r = _resolve(sub, root)
            if key not in out and "default" in sub_r:
                out[key] = copy.deepcopy(sub_r["default"])
            if key in out:
                out[key] = _fill_defaults(out[key], sub_r, root)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for key in out:
                if key not in node.get("properties", {}):
                    out[key] = _fill_defaults(out[key], extra, root)
        return out
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [_fill_defaults(v, node["items"], root) for v in value]
    return value


def _key_path(path) -> str:
    parts = []
    for p in path:
        parts.append(f"[{p}]" if isinstance(p, int) else (("." if parts else "") + str(p)))
    return "".join(parts) or "(top level)"


def _message(error) -> str:
    """One friendly line for a jsonschema ValidationError."""
    where = _key_path(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    v = error.validator
    if v == "enum":
        allowed = ", ".join(dict.fromkeys(str(a) for a in error.validator_value))
        return f"{where}: {error.instance!r} is not allowed; choose one of: {allowed}"
    if v == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(known)) if isinstance(error.instance, dict) else []
        hint = f"; allowed keys: {', '.join(known)}" if known else ""
        return f"{where}: unknown key(s) {', '.join(unknown)}{hint}"
    if v == "required":
        return f"{where}: {error.message}"
    if v == "propertyNames" or "propertyNames" in error.schema_path:
        return (f"{where}: name {error.instance!r} is not allowed; use letters, digits and underscores, "
                f"starting with a letter")
    if v in ("oneOf", "anyOf") and error.context:
        enums = [e for e in error.context if e.validator == "enum"
                 and list(e.absolute_path) == list(error.absolute_path)]
        if enums:  # e.g. a norm: one value from the list (or, where allowed, a list of them)
            lists = any(isinstance(sub, dict) and sub.get("type") == "array" for sub in error.validator_value)
            return _message(enums[0]) + (", or a list of them" if lists else "")
        best = min(error.context, key=lambda e: len(list(e.absolute_path)) * -1)
        options = []
        for sub in error.validator_value:
            sub_r = _resolve(sub, load_schema())
            if "enum" in sub_r:
                options.append(", ".join(str(a) for a in sub_r["enum"]))
            elif "type" in sub_r:
                options.append(str(sub_r["type"]))
        allowed = "; ".join(o for o in options if o)
        return f"{where}: {error.instance!r} is not valid ({best.message}); allowed: {allowed}"
    desc = schema.get("description")
    return f"{where}: {error.message}" + (f" ({desc})" if desc else "")


MAX_LISTED_ERRORS = 5


def _within(error, other) -> bool:
    """Whether `error` is one of the branch errors of `other` (a oneOf / anyOf failure)."""
    return any(error is sub or _within(error, sub) for sub in (other.context or []))


def check_schema(config: dict[str, Any]) -> dict[str, Any]:
    """Validate against the schema; ConfigError naming the key on failure; defaults filled in."""
    import jsonschema

    if not isinstance(config, dict):
        raise ConfigError(f"the config must be a mapping of keys, got {type(config).__name__}")
    schema = load_schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(config),
                    key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    if errors:
        first = jsonschema.exceptions.best_match(errors)
        others = [_message(e) for e in errors if e is not first and not _within(e, first) and not _within(first, e)]
        others = list(dict.fromkeys(m for m in others if m != _message(first)))
        shown = "".join(f"; {m}" for m in others[:MAX_LISTED_ERRORS - 1])
        rest = len(others) - (MAX_LISTED_ERRORS - 1)
        more = f" (and {rest} more problem{'s' if rest != 1 else ''})" if rest > 0 else ""
        raise ConfigError(f"invalid config: {_message(first)}{shown}{more}")
    return _fill_defaults(config, schema, schema)


def schema_keys() -> list[str]:
    """Every key name that appears anywhere in the schema (for documentation checks)."""
    schema = load_schema()
    keys: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, sub in node.get("properties", {}).items():
                keys.add(key)
                walk(sub)
            for name in ("additionalProperties", "items"):
                walk(node.get(name))
            for name in ("oneOf", "anyOf", "allOf"):
                for sub in node.get(name, []):
                    walk(sub)
        elif isinstance(node, list):
            for sub in node:
                walk(sub)

    walk(schema)
    for sub in schema.get("$defs", {}).values():
        walk(sub)
    return sorted(keys)
