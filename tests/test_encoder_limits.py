"""What the encoder can take, checked before any data is read: text encoders only, and max_length
within its position embeddings."""

import re

import pytest
from transformers import (
    AutoModel,
    BertConfig,
    DebertaV2Config,
    GPT2Config,
    ModernBertConfig,
    RobertaConfig,
    T5Config,
)

from mtl_nlp.config import ConfigError, load_run_config
from mtl_nlp.modeling.encoder import ModelLoadError, check_encoder, position_limit


def test_position_limit_per_family():
    assert position_limit(BertConfig(max_position_embeddings=512)) == 512
    # RoBERTa's position ids start after the padding index 1: 514 embeddings hold 512 tokens
    assert position_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert position_limit(ModernBertConfig(max_position_embeddings=8192)) == 8192
    # DeBERTa-v3 has relative positions only: nothing to run out of
    assert position_limit(DebertaV2Config(position_biased_input=False)) is None
    assert position_limit(DebertaV2Config(position_biased_input=True, max_position_embeddings=512)) == 512


def test_check_encoder_names_the_limit(tiny_model_dir):
    check_encoder(str(tiny_model_dir), 128)  # the tiny BERT holds 128 positions
    message = r"max_length=129, but encoder .* \(bert\) takes at most 128 tokens"
    with pytest.raises(ConfigError, match=message):
        check_encoder(str(tiny_model_dir), 129)


def test_training_refuses_a_max_length_beyond_the_encoder_before_reading_data(tiny_model_dir, tmp_path):
    from mtl_nlp.training.run import train_from_config

    # the task's data_dir does not exist: the length check must come first
    config = load_run_config(overrides=[f"model={tiny_model_dir}", "max_length=4096",
                                        f"output_dir={tmp_path}/run", f"data_dir={tmp_path}/nowhere",
                                        "tasks=[demo_ner]"])
    with pytest.raises(ConfigError, match="takes at most 128 tokens per sequence: set max_length to 128"):
        train_from_config(config)


@pytest.mark.parametrize(("config", "kind"), [
    (GPT2Config(n_layer=1, n_embd=32, n_head=2), "gpt2) is a decoder-only language model"),
    (T5Config(d_model=32, num_layers=1, num_heads=2, d_ff=64), "t5) is an encoder-decoder model"),
])
def test_models_that_are_not_text_encoders_are_refused_at_start(tmp_path, config, kind):
    from mtl_nlp import HeadConfig, MultiTaskModel
    from mtl_nlp.training.run import train_from_config

    directory = tmp_path / "model"
    config.save_pretrained(directory)
    run = load_run_config(overrides=[f"model={directory}", f"output_dir={tmp_path}/run",
                                     "tasks=[demo_sentiment]"])
    with pytest.raises(ConfigError, match=re.escape(kind) + ".*shares a text encoder"):
        train_from_config(run)
    model = AutoModel.from_config(config)
    with pytest.raises(ConfigError, match=re.escape(kind)):
        MultiTaskModel(model, [HeadConfig(name="s", type="classification", labels=["a", "b"])])


def test_a_folder_whose_config_names_no_model_type_is_one_model_load_error(tmp_path):
    (tmp_path / "config.json").write_text('{"hidden_size": 32}')
    with pytest.raises(ModelLoadError, match=f"cannot load encoder from folder '{tmp_path}': Unrecognized"):
        check_encoder(str(tmp_path), 64)
