"""Run configuration: dataclasses with defaults, loaded from YAML and `key=value` overrides.

Every value is type-checked against the dataclass field it lands in, and an unknown key is an
error that names the key and the keys that exist, so a typo never silently does nothing.
`sections` holds the keys, `values` the reading of values, `checks` the whole-config checks and
`loading` the order in which defaults, saved configs, files and overrides apply.
"""

from mtl_nlp.config.checks import CHOICES, validate
from mtl_nlp.config.loading import PATH_KEYS, load_config, load_run_config
from mtl_nlp.config.sections import (
    DEFAULT_MODEL,
    DEFAULT_TASKS,
    EVAL_EACH_EPOCH,
    DiagnosticsConfig,
    DistillConfig,
    RunConfig,
    SamplingConfig,
    SharingConfig,
    TrainConfig,
    WeightingConfig,
)
from mtl_nlp.config.values import (
    ConfigError,
    RawText,
    apply_mapping,
    coerce,
    dotted_keys,
    parse_override,
    set_value,
)

__all__ = [
    "CHOICES", "DEFAULT_MODEL", "DEFAULT_TASKS", "EVAL_EACH_EPOCH", "PATH_KEYS", "ConfigError",
    "DiagnosticsConfig", "DistillConfig", "RawText", "RunConfig", "SamplingConfig", "SharingConfig",
    "TrainConfig", "WeightingConfig", "apply_mapping", "coerce", "dotted_keys", "load_config",
    "load_run_config", "parse_override", "set_value", "validate",
]
