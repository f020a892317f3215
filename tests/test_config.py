from pathlib import Path

import pytest

from mtl_nlp.config import ConfigError, RunConfig, load_config, parse_override

ROOT = Path(__file__).resolve().parent.parent
RECIPE_CONFIGS = sorted((ROOT / "recipes" / "configs").glob("*.yaml"))


def test_defaults_without_file_or_overrides():
    config = load_config()
    assert config == RunConfig()
    assert config.tasks == ["demo_ner", "demo_sentiment", "demo_topic"]


def test_dotted_overrides_are_typed():
    config = load_config(overrides=[
        "train.lr=3e-5", "sampling.temperature=2", "train.max_steps=7", "tasks=[sst2, ag_news]",
        "data_dir=/data", "mixed_precision=no", "seed=3", "train.epochs=1",
    ])
    assert config.train.lr == 3e-5 and isinstance(config.train.lr, float)
    assert config.sampling.temperature == 2.0 and isinstance(config.sampling.temperature, float)
    assert config.train.max_steps == 7
    assert config.tasks == ["sst2", "ag_news"]
    assert config.data_dir == "/data"
    assert config.mixed_precision == "no"
    assert config.seed == 3


def test_comma_separated_list_override():
    assert load_config(overrides=["tasks=sst2,conll2003"]).tasks == ["sst2", "conll2003"]


def test_null_clears_an_optional_value():
    assert load_config(overrides=["train.max_steps=5", "train.max_steps=null"]).train.max_steps is None


def test_typo_in_key_names_the_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.lrr'.*train\.lr"):
        load_config(overrides=["train.lrr=1e-4"])
    with pytest.raises(ConfigError, match=r"unknown config key 'modle'"):
        load_config(overrides=["modle=bert-base-uncased"])


def test_wrong_type_names_key_and_type():
    with pytest.raises(ConfigError, match=r"'train\.batch_size' expects int, got 'big'"):
        load_config(overrides=["train.batch_size=big"])


def test_invalid_choice_lists_choices():
    with pytest.raises(ConfigError, match="sampling.strategy='random' is not one of: proportional"):
        load_config(overrides=["sampling.strategy=random"])


@pytest.mark.parametrize(("override", "message"), [
    ("train.log_every=0", "train.log_every must be positive, got 0"),
    ("train.max_steps=-5", "train.max_steps must be positive, got -5"),
    ("train.max_tokens=0", "train.max_tokens must be positive, got 0"),
    ("train.epochs=0", "train.epochs must be positive, got 0"),
    ("train.eval_every=-1", "train.eval_every must be 0 or more, got -1"),
    ("train.warmup_ratio=1", r"train.warmup_ratio must be in \[0, 1\), got 1"),
])
def test_out_of_range_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_gradient_normalizing_needs_a_norm():
    with pytest.raises(ConfigError, match="train.grad_norm_mode='scale' is not one of: clip, normalize"):
        load_config(overrides=["train.grad_norm_mode=scale"])
    with pytest.raises(ConfigError, match="which is 0: set it to a positive norm"):
        load_config(overrides=["train.grad_norm_mode=normalize", "train.max_grad_norm=0"])
    assert load_config(overrides=["train.grad_norm_mode=normalize"]).train.grad_norm_mode == "normalize"


def test_override_without_equals_sign():
    with pytest.raises(ConfigError, match="not of the form key=value"):
        parse_override("train.lr")


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: some/model\ntrain:\n  lr: 1.0e-4\n  batch_size: 8\n")
    config = load_config(path, ["train.batch_size=4"])
    assert (config.model, config.train.lr, config.train.batch_size) == ("some/model", 1e-4, 4)


def test_yaml_typo_names_file_and_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  epochz: 2\n")
    with pytest.raises(ConfigError, match=rf"{path}: unknown config key 'train\.epochz'"):
        load_config(path)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file not found: nowhere.yaml"):
        load_config("nowhere.yaml")


@pytest.mark.parametrize("path", RECIPE_CONFIGS, ids=[p.name for p in RECIPE_CONFIGS])
def test_every_recipe_config_loads(path):
    import mtl_nlp

    config = load_config(path)
    # A config whose command passes data_dir reads its relative files from that folder (the
    # benchmark data), which the tests do not need; every other file ships with the repository.
    reads_data_dir = "data_dir=" in path.read_text().splitlines()[0]
    for spec in mtl_nlp.resolve_tasks(config.tasks):  # named entries exist, inline ones are valid
        for file in (spec.data_files or {}).values():
            if reads_data_dir and not Path(file).is_absolute():
                continue
            assert (ROOT / file).is_file(), f"{path.name}: task {spec.name}: {file} does not exist"
    assert path.read_text().startswith("# accelerate launch recipes/")


def test_recipe_configs_exist():
    assert {p.name for p in RECIPE_CONFIGS} >= {"demo.yaml", "conll_sst2_agnews.yaml"}
