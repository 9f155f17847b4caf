"""Which activation a float model's MLPs apply (GELU, or ReLU in a GELU-less model): what the
integer model's GELU variant must be."""

from __future__ import annotations


def transformer_blocks(model) -> list:
    """The model's transformer blocks in forward order (ViT/DeiT ``blocks``; Swin: every
    stage's blocks)."""
    if hasattr(model, "layers") and hasattr(model.layers[0], "blocks"):  # Swin
        return [blk for stage in model.layers for blk in stage.blocks]
    if hasattr(model, "blocks"):
        return list(model.blocks)
    raise ValueError(f"{type(model).__name__} has no transformer blocks intvit knows")


def block_activation(block) -> str:
    """``"relu"`` or ``"gelu"``: what the block's MLP applies between fc1 and fc2."""
    import torch

    act = block.mlp.act
    if isinstance(act, torch.nn.ReLU):
        return "relu"
    if isinstance(act, torch.nn.GELU):
        return "gelu"
    raise ValueError(f"unsupported MLP activation {type(act).__name__}")


def mlp_activation(model) -> str:
    """``"relu"`` for a GELU-less model, ``"gelu"`` for an original one; a model with both
    (a distillation stopped half way) cannot be quantized and is refused."""
    acts = {block_activation(b) for b in transformer_blocks(model)}
    if len(acts) > 1:
        swapped = relu_blocks(model)
        raise ValueError(
            f"the model is part GELU, part ReLU (ReLU in blocks {swapped}): finish its "
            "relu-distill run before quantizing it"
        )
    return acts.pop()


def relu_blocks(model) -> list[int]:
    return [i for i, b in enumerate(transformer_blocks(model)) if block_activation(b) == "relu"]
