"""Tiny random encoders of every family the toolkit supports, for the tests (built offline)."""

from __future__ import annotations

import torch
from transformers import DistilBertConfig, DistilBertModel

FAMILIES = ["distilbert", "albert", "electra", "deberta-v2", "mpnet", "xlm-roberta", "modernbert"]


def tiny_encoder(family: str, vocab_size: int, num_layers: int = 2, local_attention: int = 16):
    """A random encoder of `family` (hidden 32, 2 layers unless asked) for the tiny WordPiece
    tokenizer; ModernBERT's global layers come every 2nd layer, its local ones see
    `local_attention` tokens."""
    from transformers import (
        AlbertConfig,
        AlbertModel,
        DebertaV2Config,
        DebertaV2Model,
        ElectraConfig,
        ElectraModel,
        ModernBertConfig,
        ModernBertModel,
        MPNetConfig,
        MPNetModel,
        XLMRobertaConfig,
        XLMRobertaModel,
    )

    torch.manual_seed(0)
    shape = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=num_layers, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=130, pad_token_id=0)
    if family == "distilbert":
        return DistilBertModel(DistilBertConfig(vocab_size=vocab_size, dim=32, n_layers=num_layers, n_heads=2,
                                                hidden_dim=64, max_position_embeddings=128, pad_token_id=0))
    if family == "albert":
        return AlbertModel(AlbertConfig(embedding_size=16, **shape))
    if family == "electra":
        return ElectraModel(ElectraConfig(embedding_size=16, **shape))
    if family == "deberta-v2":  # DeBERTa-v3's shape: relative positions only
        return DebertaV2Model(DebertaV2Config(relative_attention=True, position_biased_input=False,
                                              pos_att_type=["p2c", "c2p"], max_relative_positions=-1,
                                              position_buckets=16, **shape))
    if family == "mpnet":
        return MPNetModel(MPNetConfig(**shape))
    if family == "xlm-roberta":
        return XLMRobertaModel(XLMRobertaConfig(**shape))
    if family == "modernbert":
        return ModernBertModel(ModernBertConfig(
            vocab_size=vocab_size, hidden_size=32, num_hidden_layers=num_layers, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=128, pad_token_id=0, bos_token_id=2,
            eos_token_id=3, cls_token_id=2, sep_token_id=3, global_attn_every_n_layers=2,
            local_attention=local_attention))
    raise ValueError(family)
