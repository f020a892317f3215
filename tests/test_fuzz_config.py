"""Property-based tests of `key=value` config overrides (and YAML mappings): a valid key takes a
value of its field's type; an unknown key, a wrong type, an out-of-range value or text YAML
cannot read raises ConfigError (an MtlNlpError) naming the key and the valid keys or choices,
never a raw TypeError/ValueError/OverflowError from inside."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mtl_nlp.common.errors import MtlNlpError
from mtl_nlp.config import (
    CHOICES,
    ConfigError,
    RunConfig,
    apply_mapping,
    load_config,
    parse_override,
    set_value,
)

FUZZ = dict(derandomize=True, database=None, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def leaf_keys(cls: type = RunConfig, prefix: str = "") -> dict[str, Any]:
    """{dotted key: type hint} of every value of the config (read from the dataclasses, so a
    field added later is covered too)."""
    keys: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            keys.update(leaf_keys(hint, f"{prefix}{field.name}."))
        else:
            keys[prefix + field.name] = hint
    return keys


LEAVES = leaf_keys()
SECTIONS = {key.rsplit(".", 1)[0] for key in LEAVES if "." in key}
MAPPINGS = {key for key, hint in LEAVES.items() if typing.get_origin(hint) is dict}  # key.NAME=value sets one
NULLS = ("", "~", "null", "Null", "NULL")
YAML_WORDS = ("yes", "off", "true", "false", "null")  # words YAML reads as booleans or null


def conforms(value: Any, hint: Any) -> bool:
    """Whether `value` has exactly the type `hint` describes (floats finite, bools not ints)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(conforms(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(conforms(v, item) for v in value)
    if typing.get_origin(hint) is dict:
        key_hint, item = typing.get_args(hint)
        return isinstance(value, dict) and all(conforms(k, key_hint) and conforms(v, item)
                                               for k, v in value.items())
    if hint is Any:
        return True
    if hint is float:
        return type(value) is float and math.isfinite(value)
    return type(value) is hint


def get(config: RunConfig, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def check_error(error: ConfigError, key: str) -> None:
    """A ConfigError names the key; an unknown key lists the valid ones, a choice its choices."""
    assert isinstance(error, MtlNlpError)
    message = str(error)
    if "unknown config key" in message:
        assert "valid keys: " in message
    elif "is not of the form key=value" not in message:
        assert key.split(".")[0] in message, message
    if key in CHOICES and "is not one of" in message:
        assert all(choice in message for choice in CHOICES[key])


KEY_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="="), max_size=20),
    st.sampled_from(sorted(LEAVES) + sorted(SECTIONS)).flatmap(
        lambda key: st.sampled_from([key, key.upper(), key + ".x", key + ".", "." + key, key + "s",
                                     key.replace(".", ".."), f" {key} ", key.replace("_", "-")])
    ),
)


@settings(max_examples=400, **FUZZ)
@given(key=KEY_TEXT, value=st.sampled_from(["1", "0.5", "true", "x", "null", "[a]", "{a: 1}"]))
def test_any_key_is_set_or_refused_with_a_config_error(key, value):
    """400 arbitrary key strings (random unicode; and valid keys and sections mangled: case, a
    suffix, dots, spaces, dashes) with one of 7 values: load_config either succeeds, with the key
    a valid one, or raises ConfigError; an unknown key's message names it and lists the valid keys."""
    try:
        load_config(overrides=[f"{key}={value}"])
    except ConfigError as error:
        check_error(error, key.strip())
        event("refused")
        if "unknown config key" in str(error):
            assert key.strip() not in LEAVES
    else:
        event("accepted")
        mapping, _, item = key.strip().rpartition(".")  # a mapping's entry: distill.teachers.cola
        assert key.strip() in LEAVES or key.strip() in SECTIONS or (mapping in MAPPINGS and item)


def typed_values(hint: Any) -> st.SearchStrategy[tuple[str, Any]]:
    """(override text, the value it must set) for a field of type `hint`."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(hint) if option is not type(None)]
        optional = type(None) in typing.get_args(hint)
        nulls = [st.sampled_from(NULLS).map(lambda text: (text, None))] if optional else []
        if options == [str]:  # a path or a name: kept as typed, unless it spells null
            text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20)
            return st.one_of(*nulls, text.filter(lambda t: t.strip() not in NULLS).map(lambda t: (t, t)))
        if str in options:  # a number or a word (train.eval_every: 50 or epoch): words YAML reads as text
            words = st.from_regex(r"[a-z]{3,10}", fullmatch=True).filter(lambda w: w not in YAML_WORDS)
            others = [typed_values(option) for option in options if option is not str]
            return st.one_of(*nulls, words.map(lambda w: (w, w)), *others)
        return st.one_of(*nulls, *(typed_values(option) for option in options))
    if typing.get_origin(hint) is list:
        names = st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), min_size=1, max_size=4)
        return st.one_of(names.map(lambda n: (",".join(n), n)), names.map(lambda n: (f"[{', '.join(n)}]", n)))
    if typing.get_origin(hint) is dict:  # distill.teachers: {task: folder}
        word = st.from_regex(r"[a-z][a-z0-9_/]{0,8}", fullmatch=True)
        word = word.filter(lambda w: w not in (*YAML_WORDS, "no", "on"))  # words YAML reads as bools
        names = st.dictionaries(word, word, max_size=3)
        return names.map(lambda n: ("{" + ", ".join(f"{k}: {v}" for k, v in n.items()) + "}", n))
    if hint is bool:
        return st.sampled_from([("true", True), ("false", False), ("yes", True), ("no", False),
                                ("True", True), ("off", False)])
    if hint is int:
        return st.integers(-(10**30), 10**30).map(lambda n: (str(n), n))
    if hint is float:
        number = st.floats(allow_nan=False, allow_infinity=False)
        integers = st.integers(-(10**6), 10**6).map(lambda n: (str(n), n))
        return st.one_of(number.map(lambda x: (repr(x), x)), integers,
                         number.map(lambda x: (f"{x:e}", float(f"{x:e}"))))
    if hint is str:  # kept as typed: `no` stays "no", `1` stays "1"
        text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
        return text.map(lambda t: (t, t))
    raise AssertionError(f"no strategy for {hint}")


@settings(max_examples=400, **FUZZ)
@given(data=st.data())
def test_a_valid_key_takes_a_value_of_its_type(data):
    """400 (valid key, value of the field's type written as text) pairs: set_value stores exactly
    that value with exactly the field's type (ints of 30 digits, floats in repr and %e forms,
    YAML booleans, null for optional fields, any unicode text for str fields, lists written as
    `a,b` or `[a, b]`)."""
    key = data.draw(st.sampled_from(sorted(LEAVES)), label="key")
    text, expected = data.draw(typed_values(LEAVES[key]), label="value")
    config = RunConfig()
    set_value(config, *parse_override(f"{key}={text}"), source="command line")
    value = get(config, key)
    assert value == expected and type(value) is type(expected) or (
        type(expected) is int and type(value) is float and value == float(expected)
    )
    assert conforms(value, LEAVES[key])


VALUE_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=30),
    st.sampled_from([
        "2024-13-01", "2024-02-30", "9" * 400, ".nan", ".inf", "-.inf", "1e999", "nan", "infinity",
        "[1, {a: b}]", "{a: 1}", "[" * 50 + "]" * 50, "!!binary aGk=", "!!python/object:os.system",
        "&a [*a]", "*a", "@x", "%x", "`x", "- a", "? a", "a: b: c", "'", '"', "{", "0o17", "0x1F",
        "1_000", "3:00", "~", "yes", "null", "-0", "1e-5", "\x00", "\x85", "\ufeff1",
    ]),
)


@settings(max_examples=600, **FUZZ)
@given(key=st.sampled_from(sorted(LEAVES)), value=VALUE_TEXT)
def test_any_value_is_typed_or_refused_with_a_config_error(key, value):
    """600 (valid key, arbitrary value text) pairs: random unicode and YAML traps (impossible dates,
    400-digit ints, .nan/.inf, tags, anchors, aliases, reserved characters, deep nesting, control
    characters): load_config either gives the field a value of its type (floats finite) or raises
    a ConfigError naming the key (and listing the choices of a choice field). Nothing else."""
    try:
        config = load_config(overrides=[f"{key}={value}"])
    except ConfigError as error:
        event("refused")
        check_error(error, key)
    else:
        event("accepted")
        assert conforms(get(config, key), LEAVES[key])


JSON_LIKE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)


@settings(max_examples=300, **FUZZ)
@given(data=st.dictionaries(
    st.one_of(st.sampled_from(sorted(LEAVES)), st.sampled_from(sorted(LEAVES) + sorted(SECTIONS)),
              st.text(max_size=10)),
    JSON_LIKE, max_size=3,
))
def test_any_mapping_is_applied_or_refused_with_a_config_error(data):
    """300 YAML-like mappings (valid or random keys, nested lists/dicts/None/bools/ints/floats incl.
    nan and inf/strings as values), as a config file gives them: apply_mapping leaves every value
    of its field's type, or raises ConfigError."""
    config = RunConfig()
    try:
        apply_mapping(config, data, source="run.yaml")
    except ConfigError as error:
        assert str(error).startswith("run.yaml: ")
        event("refused")
        return
    event("accepted")
    for key, hint in LEAVES.items():
        assert conforms(get(config, key), hint), key


@pytest.mark.parametrize(("override", "message"), [
    ("train.lr=2024-13-01", "value of 'train.lr' is not valid YAML: month must be in 1..12"),
    ("train.lr=" + "9" * 400, "'train.lr' expects float"),
    ("train.lr=.nan", "'train.lr' expects a finite number, got nan"),
    ("train.epochs=1e999", "'train.epochs' expects a finite number, got '1e999'"),
    ("tracker=[1, {a: b}]", r"'tracker\[0\]' expects str, got 1"),
])
def test_values_the_properties_found_are_config_errors(override, message):
    """Regressions: before, a raw ValueError / OverflowError from inside, and nan, inf or a list of
    non-strings accepted as they were."""
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


@pytest.mark.parametrize("text", ["2024", "/data #1", "@shared", "~/data", "yes", "[x]"])
def test_optional_paths_are_kept_as_typed(text):
    """Regression: `data_dir=2024` was refused (YAML read an int), `data_dir=/data #1` became
    "/data" (a YAML comment) and `data_dir=@shared` was invalid YAML."""
    assert load_config(overrides=[f"data_dir={text}"]).data_dir == str(Path(text).expanduser())
    assert load_config(overrides=["data_dir=null"]).data_dir is None
