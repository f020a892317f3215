"""How deep in the encoder each trainable parameter sits, for layer-wise learning-rate decay: 0 for
the embeddings, i for transformer layer i (1-based; a task's private copy of layer i too), and
L + 1 for what reads the top of an L-layer encoder (poolers, a final norm, the task heads)."""

from __future__ import annotations

from torch import nn

from mtl_nlp.modeling.layer_layouts import SharingError, layout_of


def parameter_depths(model: nn.Module) -> tuple[dict[str, int], int]:
    """({parameter name: depth}, L) for a MultiTaskModel. An encoder whose layers are not a list
    (ALBERT shares one layer's weights across its depth) has its shared layer at the top, L."""
    encoder, sharing = model.encoder, model.sharing
    try:
        layers = list(layout_of(encoder).layers(encoder))
    except SharingError:
        layers = []
    total = sharing.shape.num_layers or len(layers) or encoder.config.num_hidden_layers
    by_id = {}
    for index, layer in enumerate(layers):
        by_id.update(dict.fromkeys(map(id, layer.parameters()), index + 1))
    for private in sharing.private.values():
        for offset, layer in enumerate(private.layer):
            by_id.update(dict.fromkeys(map(id, layer.parameters()), sharing.shared_count + offset + 1))
    depths = {}
    for name, parameter in model.named_parameters():
        if id(parameter) in by_id:
            depths[name] = by_id[id(parameter)]
        elif name.startswith("encoder.") and "embedding" in name:
            depths[name] = 0
        elif name.startswith("encoder.") and not layers:
            depths[name] = total  # ALBERT's one shared layer group runs at every depth, the top too
        else:
            depths[name] = total + 1
    return depths, total
