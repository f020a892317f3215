"""The encoder's position limit, checked against max_length before any data is read."""

import pytest
from transformers import BertConfig, DebertaV2Config, ModernBertConfig, RobertaConfig

from mtl_nlp.config import ConfigError, load_run_config
from mtl_nlp.modeling.encoder import check_max_length, position_limit


def test_position_limit_per_family():
    assert position_limit(BertConfig(max_position_embeddings=512)) == 512
    # RoBERTa's position ids start after the padding index 1: 514 embeddings hold 512 tokens
    assert position_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert position_limit(ModernBertConfig(max_position_embeddings=8192)) == 8192
    # DeBERTa-v3 has relative positions only: nothing to run out of
    assert position_limit(DebertaV2Config(position_biased_input=False)) is None
    assert position_limit(DebertaV2Config(position_biased_input=True, max_position_embeddings=512)) == 512


def test_check_max_length_names_the_limit(tiny_model_dir):
    check_max_length(str(tiny_model_dir), 128)  # the tiny BERT holds 128 positions
    message = r"max_length=129, but encoder .* \(bert\) takes at most 128 tokens"
    with pytest.raises(ConfigError, match=message):
        check_max_length(str(tiny_model_dir), 129)


def test_training_refuses_a_max_length_beyond_the_encoder_before_reading_data(tiny_model_dir, tmp_path):
    from mtl_nlp.training.run import train_from_config

    # the task's data_dir does not exist: the length check must come first
    config = load_run_config(overrides=[f"model={tiny_model_dir}", "max_length=4096",
                                        f"output_dir={tmp_path}/run", f"data_dir={tmp_path}/nowhere",
                                        "tasks=[demo_ner]"])
    with pytest.raises(ConfigError, match="takes at most 128 tokens per sequence: set max_length to 128"):
        train_from_config(config)
