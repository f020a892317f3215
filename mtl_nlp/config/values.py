"""Reading config values: YAML text and `key=value` overrides, each value checked against the type
of the dataclass field it lands in; an unknown key names the keys that exist."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

import yaml

from mtl_nlp.common.errors import MtlNlpError


class ConfigError(MtlNlpError, ValueError):
    """A configuration file or override that cannot be applied."""



# What reading YAML text can raise: syntax errors, and values its constructors refuse (a date
# 2024-13-01 is a ValueError, nesting too deep a RecursionError). UnicodeDecodeError is a ValueError.
YAML_ERRORS = (yaml.YAMLError, ValueError, OverflowError, RecursionError)
NULL_SPELLINGS = ("", "~", "null", "Null", "NULL")  # YAML's null, for a `str | None` value


class RawText(str):
    """A command-line value not yet parsed: kept as text for str fields (so `no` stays "no"),
    parsed as YAML for every other type."""


def parse_override(text: str) -> tuple[str, RawText]:
    """Split `train.lr=3e-5` into ("train.lr", "3e-5"); the value is typed when it is applied."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. train.lr=3e-5)")
    return key.strip(), RawText(raw)


def _parse_raw(value: RawText, key: str, source: str) -> Any:
    try:
        return yaml.safe_load(value) if value else None
    except YAML_ERRORS as exc:
        raise ConfigError(f"{source}: value of {key!r} is not valid YAML: {exc}") from exc


def apply_mapping(target: Any, data: dict[str, Any], source: str, prefix: str = "") -> None:
    """Apply nested mapping `data` onto dataclass `target`, recursing into nested dataclasses."""
    for key, value in data.items():
        set_value(target, f"{prefix}{key}", value, source=source, root_prefix=prefix)


def set_value(
    config: Any, dotted_key: str, value: Any, source: str, root_prefix: str = ""
) -> None:
    """Set `dotted_key` (relative to `config`) to `value`, checking the key and the type."""
    parts = dotted_key[len(root_prefix) :].split(".")
    target = config
    for depth, name in enumerate(parts):
        full_key = root_prefix + ".".join(parts[: depth + 1])
        fields = {f.name: f for f in dataclasses.fields(target)}
        if name not in fields:
            valid = ", ".join(sorted(root_prefix + ".".join(parts[:depth] + [n]) for n in fields))
            raise ConfigError(f"{source}: unknown config key {full_key!r}; valid keys: {valid}")
        current = getattr(target, name)
        hint = typing.get_type_hints(type(target))[name]
        if depth < len(parts) - 1 and typing.get_origin(hint) is dict:  # distill.teachers.cola=DIR
            item = ".".join(parts[depth + 1 :])
            if not item:
                raise ConfigError(f"{source}: {full_key}.<name> needs a name after the dot (e.g. "
                                  f"{full_key}.cola=DIR)")
            value_hint = typing.get_args(hint)[1]
            current[item] = coerce(value, value_hint, root_prefix + ".".join(parts), source)
            return
        if depth < len(parts) - 1:
            if not dataclasses.is_dataclass(current):
                raise ConfigError(f"{source}: {full_key!r} is a value, not a section")
            target = current
            continue
        if dataclasses.is_dataclass(current):
            if isinstance(value, RawText):
                value = _parse_raw(value, full_key, source)
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {full_key!r} is a section; give a mapping")
            apply_mapping(current, value, source, prefix=full_key + ".")
            return
        setattr(target, name, coerce(value, hint, full_key, source))


def coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Return `value` as type `hint`, or raise a ConfigError naming the key and the type."""
    origin = typing.get_origin(hint)
    if isinstance(value, RawText):
        if hint is str:
            return str(value)
        if origin in (typing.Union, types.UnionType) and set(typing.get_args(hint)) == {str, type(None)}:
            # A path or a name: kept as typed (`data_dir=2024`, `cache_dir=/a #b`), except null.
            return None if value.strip() in NULL_SPELLINGS else str(value)
        value = _parse_raw(value, key, source)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option, key, source)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key!r} expects a mapping, got {value!r}")
        key_hint, value_hint = typing.get_args(hint)
        return {coerce(name, key_hint, key, source): coerce(item, value_hint, f"{key}.{name}", source)
                for name, item in value.items()}
    if origin is list:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key!r} expects a list, got {value!r}")
        item_hint = (typing.get_args(hint) or (Any,))[0]
        return [coerce(item, item_hint, f"{key}[{index}]", source) for index, item in enumerate(value)]
    if hint is Any:
        return value
    if hint is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        # YAML 1.1 reads "3e-5" (no dot) as a string; users write it that way all the time.
        try:
            number = float(value)
        except (ValueError, OverflowError):  # not a number; an int too large for a float
            number = None
        if number is not None:
            if not math.isfinite(number):
                raise ConfigError(f"{source}: {key!r} expects a finite number, got {value!r}")
            return number
    if hint is bool and isinstance(value, bool) or hint is not bool and type(value) is hint:
        return value
    raise ConfigError(
        f"{source}: {key!r} expects {getattr(hint, '__name__', hint)}, got {value!r}"
    )


def dotted_keys(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping (a config's to_dict()) as {dotted key: value}: `{"train": {"lr": 1e-4}}`
    gives `{"train.lr": 1e-4}`; an empty mapping gives no key."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(dotted_keys(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
