"""Load a float timm ViT / DeiT / Swin by name, or one of the small built-in configurations.

``pretrained=True`` downloads weights where the user's machine can; ``checkpoint`` loads a
local state dict. Small configurations (``digits_vit``, ``digits_deit``, ``digits_swin``)
are 32x32 single-channel models for the built-in digits data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: Model families intvit converts, by timm name prefix.
SUPPORTED_PREFIXES = ("vit_", "deit_", "deit3_", "swin_")


@dataclass(frozen=True)
class SmallConfig:
    """A small timm configuration for tests and the built-in demo."""

    name: str
    timm_name: str
    kwargs: dict = field(default_factory=dict)


SMALL_CONFIGS = {
    c.name: c
    for c in (
        SmallConfig(
            "digits_vit",
            "vit_tiny_patch16_224",
            dict(
                img_size=32,
                patch_size=8,
                in_chans=1,
                embed_dim=64,
                depth=4,
                num_heads=4,
                mlp_ratio=2.0,
                num_classes=10,
            ),
        ),
        SmallConfig(
            "digits_deit",
            "deit_tiny_distilled_patch16_224",
            dict(
                img_size=32,
                patch_size=8,
                in_chans=1,
                embed_dim=64,
                depth=4,
                num_heads=4,
                mlp_ratio=2.0,
                num_classes=10,
            ),
        ),
        SmallConfig(
            "digits_swin",
            "swin_tiny_patch4_window7_224",
            dict(
                img_size=32,
                patch_size=2,
                in_chans=1,
                embed_dim=32,
                depths=(2, 2),
                num_heads=(2, 4),
                window_size=4,
                mlp_ratio=2.0,
                num_classes=10,
            ),
        ),
    )
}


def supported_names() -> list[str]:
    return sorted(SMALL_CONFIGS) + [f"{p}*" for p in SUPPORTED_PREFIXES]


def check_model_name(name: str) -> None:
    import timm

    if name in SMALL_CONFIGS:
        return
    if not name.startswith(SUPPORTED_PREFIXES):
        raise ValueError(f"unsupported model {name!r}; supported: {', '.join(supported_names())}")
    if name not in timm.list_models(name):
        raise ValueError(f"timm has no model named {name!r}")


def create_float_model(
    name: str, pretrained: bool = False, checkpoint: str | Path | None = None, **overrides
):
    """A float timm model in eval mode, with fused attention off (calibration sees softmax)."""
    import timm
    import torch

    check_model_name(name)
    timm.layers.set_fused_attn(False)
    if name in SMALL_CONFIGS:
        cfg = SMALL_CONFIGS[name]
        model = timm.create_model(cfg.timm_name, pretrained=False, **{**cfg.kwargs, **overrides})
    else:
        model = timm.create_model(name, pretrained=pretrained, **overrides)
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise ValueError(f"checkpoint {str(path)!r} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("model", state) if isinstance(state, dict) else state
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            first = str(err).splitlines()[0]
            raise ValueError(
                f"checkpoint {str(path)!r} does not match model {name!r}: {first}"
            ) from None
    return model.eval()
