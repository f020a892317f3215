"""A RunConfig from defaults, a saved config, a YAML file and `key=value` overrides, in that order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from mtl_nlp.common.run_files import CHECKPOINT_CONFIG, STATE_RUN_CONFIG, newest_state
from mtl_nlp.config.checks import validate
from mtl_nlp.config.sections import RunConfig
from mtl_nlp.config.values import YAML_ERRORS, ConfigError, apply_mapping, parse_override, set_value


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None,
    base: dict[str, Any] | None = None, base_source: str = "saved config",
) -> RunConfig:
    """Build a RunConfig from defaults, then `base` (a saved config's mapping, e.g. the run
    config inside a checkpoint), then a YAML file, then `key=value` overrides in order."""
    config = RunConfig()
    if base is not None:
        apply_mapping(config, base, source=base_source)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            with path.open(encoding="utf-8") as handle:
                data = yaml.safe_load(handle) or {}
        except YAML_ERRORS as exc:  # a syntax error names its line; a bad value (2024-13-01) does not
            raise ConfigError(f"{path}: not a valid YAML config: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
        apply_mapping(config, data, source=str(path))
    for override in overrides or []:
        key, value = parse_override(override)
        set_value(config, key, value, source="command line")
    for key in PATH_KEYS:  # `~/runs/x` means the home folder, as in a shell
        value = getattr(config, key)
        if value is not None:
            setattr(config, key, str(Path(value).expanduser()))
    validate(config)
    return config


PATH_KEYS = ("output_dir", "data_dir", "cache_dir", "resume_from", "init_from")


def load_run_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """The config of a run launched from the command line: `load_config`, except that
    `resume_from=DIR` with no config file starts from the run config saved in DIR's checkpoint,
    so resuming needs nothing but the folder (the other overrides still apply on top)."""
    resume = None
    for override in overrides or []:
        key, value = parse_override(override)
        if key == "resume_from":
            resume = value
    if path is not None or resume is None:
        return load_config(path, overrides)
    folder = Path(resume)
    if not folder.exists():
        raise ConfigError(f"resume_from: {folder} does not exist")
    # The newest state's own record first (the run that wrote it), then the checkpoint's (the
    # run that saved the best model); DIR is a run's output_dir or one of its state folders.
    state = newest_state(folder)
    records = [state / STATE_RUN_CONFIG] if state is not None else []
    for saved in (*records, folder / CHECKPOINT_CONFIG, folder.parent / CHECKPOINT_CONFIG):
        if saved.is_file():
            data = json.loads(saved.read_text())
            run_config = data if saved.name == STATE_RUN_CONFIG else data.get("run_config")
            if run_config is not None:
                return load_config(None, overrides, base=run_config, base_source=str(saved))
    raise ConfigError(f"resume_from: {folder} holds no saved run config; give the run's config "
                      "with --config")
