"""Load a float timm ViT / DeiT / Swin by name, or one of the small built-in configurations.

``pretrained=True`` downloads weights where the user's machine can; ``checkpoint`` loads a
local state dict (or an intvit checkpoint ``{"model": ..., "intvit": ...}``: a GELU-less one
gets its ReLU MLPs back, see :mod:`intvit.models.gelu_less`). Small configurations are
single-channel models for the built-in data sets (:mod:`intvit.models.datasets`), each with
the recipe its cached checkpoint is trained with:

- ``digits_vit``, ``digits_deit``, ``digits_swin``: 32x32 inputs; the ViT/DeiT cut them into
  16 patches of 8x8 pixels (an 8x8 scan upsampled: each patch is 2x2 scanned pixels).
- ``mnist_vit``, ``mnist_deit``, ``mnist_swin``: 28x28 MNIST. The ViT/DeiT take patches of 4,
  so 49 tokens and the class token, a quarter of DeiT's 196 at 224 pixels with the same
  patch-to-image ratio as a 16-pixel patch at 112; the Swin takes patches of 2 (14x14 tokens,
  windows of 7, then 7x7 after its merge).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from intvit.models.gelu_less import META_KEY, apply_relu_blocks
from intvit.models.recipe import TrainConfig
from intvit.models.state import check_state_fits

#: Model families intvit converts, by timm name prefix.
SUPPORTED_PREFIXES = ("vit_", "deit_", "deit3_", "swin_")


@dataclass(frozen=True)
class SmallConfig:
    """A small timm configuration for tests and the built-in demo: its built-in data set and
    the recipe its zoo checkpoint is trained with."""

    name: str
    timm_name: str
    kwargs: dict = field(default_factory=dict)
    data: str = "digits"
    recipe: TrainConfig = field(default_factory=TrainConfig)


#: ViT and DeiT digits models share one shape (DeiT adds the distillation token and head).
_DIGITS_VIT = dict(
    img_size=32,
    patch_size=8,
    in_chans=1,
    embed_dim=64,
    depth=4,
    num_heads=4,
    mlp_ratio=2.0,
    num_classes=10,
)

#: The MNIST ViT and DeiT: 7x7 patches of 4 pixels, the digits models' width and depth.
_MNIST_VIT = {**_DIGITS_VIT, "img_size": 28, "patch_size": 4}

#: The zoo's recipes: AdamW, lr 2e-3, cosine, batch 64, a random shift of up to 2 pixels
#: (intvit.models.augment). Float test top-1 measured here (seed 0, 500 test images):
#: - digits ViT / DeiT: 96.8% / - at 60 epochs without the shift, 98.4 / 97.6% at 60 with
#:   it, 99.2 / 99.2% at 120;
#: - digits Swin: 95.6% at 60 epochs, 97.4% at 120, 98.2% at 200 (lr 1e-3: 94.8% at 120);
#: - MNIST ViT / DeiT / Swin: 96.8 / 93.4 / 96.0% at 40 epochs; ViT and DeiT 99.0 / 97.2%
#:   at 80.
DIGITS_RECIPE = TrainConfig(epochs=120, shift=2)
DIGITS_SWIN_RECIPE = TrainConfig(epochs=200, shift=2)
MNIST_RECIPE = TrainConfig(epochs=80, shift=2)

SMALL_CONFIGS = {
    c.name: c
    for c in (
        SmallConfig("digits_vit", "vit_tiny_patch16_224", _DIGITS_VIT, recipe=DIGITS_RECIPE),
        SmallConfig(
            "digits_deit", "deit_tiny_distilled_patch16_224", _DIGITS_VIT, recipe=DIGITS_RECIPE
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
            recipe=DIGITS_SWIN_RECIPE,
        ),
        SmallConfig("mnist_vit", "vit_tiny_patch16_224", _MNIST_VIT, "mnist", MNIST_RECIPE),
        SmallConfig(
            "mnist_deit", "deit_tiny_distilled_patch16_224", _MNIST_VIT, "mnist", MNIST_RECIPE
        ),
        SmallConfig(
            "mnist_swin",
            "swin_tiny_patch4_window7_224",
            dict(
                img_size=28,
                patch_size=2,
                in_chans=1,
                embed_dim=32,
                depths=(2, 2),
                num_heads=(2, 4),
                window_size=7,
                mlp_ratio=2.0,
                num_classes=10,
            ),
            "mnist",
            MNIST_RECIPE,
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


def load_float_model(name: str, pretrained: bool = False, checkpoint: str | Path | None = None):
    """The float model ``name``: a checkpoint that carries its arch (``intvit nas extract``,
    ``intvit train``: see :mod:`intvit.models.hetero_vit`), or a timm / small config name
    (:func:`create_float_model`)."""
    from intvit.models.hetero_vit import is_hetero_checkpoint, load_hetero_checkpoint

    if is_hetero_checkpoint(name):
        if checkpoint is not None or pretrained:
            raise ValueError(f"{name!r} is a checkpoint already; drop --checkpoint/--pretrained")
        return load_hetero_checkpoint(name)
    if Path(name).is_file():
        raise ValueError(describe_model_file(Path(name)))
    return create_float_model(name, pretrained, checkpoint)


def describe_model_file(path: Path) -> str:
    """Why the file ``path``, given where a model is expected, is not one: unreadable, a
    supernet, or a state dict without its arch."""
    import torch

    try:
        body = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # pickle, zip or format errors all mean the same to a user
        return (
            f"{str(path)!r} is not a readable checkpoint (truncated, or not a PyTorch file); "
            "a model is a timm name, a small config or a checkpoint from intvit train"
        )
    if isinstance(body, dict) and body.get("format") == "intvit-supernet":
        return (
            f"{str(path)!r} is a supernet; take a subnet out of it first: "
            f"intvit nas extract {path} --arch ... -o subnet.pt"
        )
    if isinstance(body, dict):
        return (
            f"{str(path)!r} is a state dict without its arch; give the model's name and the "
            f"file as --checkpoint {path}"
        )
    return f"{str(path)!r} holds a {type(body).__name__}, not a model checkpoint"


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
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle, zip or format errors all mean the same to a user
            raise ValueError(
                f"checkpoint {str(path)!r} is not a PyTorch state dict: {err}"
            ) from None
        relu = state.get(META_KEY, {}).get("relu_blocks", []) if isinstance(state, dict) else []
        state = state.get("model", state) if isinstance(state, dict) else state
        if not isinstance(state, dict):
            raise ValueError(f"checkpoint {str(path)!r} does not hold a state dict")
        if relu:  # a GELU-less checkpoint (intvit relu-distill): ReLU MLPs, fc1 bias zero
            apply_relu_blocks(model, relu)
        check_state_fits(model, state, f"checkpoint {str(path)!r} does not fit model {name!r}")
        model.load_state_dict(state)
    return model.eval()
