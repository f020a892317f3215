"""The encoder's repeated transformer blocks: the units FSDP's transformer-based wrapping shards.

Accelerate wraps the classes a model names in `_no_split_modules`. Some encoder families declare
none (DistilBERT, ALBERT, ELECTRA, DeBERTa-v2, MPNet in today's transformers), and FSDP then
gathers the whole encoder as one unit, so no layer is ever sharded on its own. For those the
blocks are found from the model itself: the first list of same-class modules (the layer stack).
"""

from __future__ import annotations

from torch import nn


def block_class_names(encoder: nn.Module) -> list[str]:
    """Class names of the encoder's unsplittable blocks: those it declares, or else the class of
    its layer stack's modules (BertLayer, TransformerBlock, AlbertLayerGroup, ...); [] when it
    has neither."""
    declared = list(getattr(encoder, "_no_split_modules", None) or [])
    if declared:
        return declared
    for module in encoder.modules():
        if isinstance(module, nn.ModuleList) and len(module) and len({type(block) for block in module}) == 1:
            return [type(module[0]).__name__]
    return []
