"""The model families the integer pipeline converts, one registry entry each: how a float
model's arch is read, which shadow forward calibration observes, how its weights are
quantized, its plan and its reference forward. (Its Relax graph builder is registered under
the same name in :data:`intvit.relax_ops.graph.GRAPH_BUILDERS`: graphs are a higher layer.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from intvit.quant import int_swin, int_vit
from intvit.quant.arch import Arch, SwinArch, VitArch
from intvit.quant.shadow import shadow_forward, vit_arch
from intvit.quant.shadow_swin import shadow_forward_swin, swin_arch
from intvit.quant.weights import quantize_swin_weights, quantize_vit_weights


@dataclass(frozen=True, kw_only=True)
class Family:
    """One model family. ``logit_point``: the activation point whose scale (times the head's
    weight scale) dequantizes the logit accumulators."""

    name: str
    arch_type: type
    accepts: Callable[[object], bool]
    arch_of: Callable[[object], Arch]
    shadow_forward: Callable
    quantize_weights: Callable
    build_plan: Callable
    reference: Callable
    expected_shapes: Callable[[Arch], dict[str, tuple[int, ...]]]
    logit_point: str


def _is_swin(model) -> bool:
    from timm.models.swin_transformer import SwinTransformer

    return isinstance(model, SwinTransformer)


def _is_vit(model) -> bool:
    from timm.models.vision_transformer import VisionTransformer

    return isinstance(model, VisionTransformer) or isinstance(getattr(model, "arch", None), VitArch)


def vit_shapes(arch: VitArch) -> dict[str, tuple[int, ...]]:
    """The weight shapes a ViT of ``arch`` has (a low-rank linear: both factors)."""
    shapes = {
        "pe.w": (arch.dim, arch.in_chans * arch.patch_size**2),
        "cls_q": (1, arch.prefix_tokens, arch.dim),
        "pos_q": (1, arch.tokens, arch.dim),
        "head.w": (arch.num_classes, arch.dim),
    }
    for i, blk in enumerate(arch.blocks):
        for layer in ("qkv", "proj", "fc1", "fc2"):
            n_in, n_out = blk.linear_shape(layer, arch.dim)
            r = blk.rank(layer)
            name = f"b{i}.{layer}"
            if r is None:
                shapes[name + ".w"] = (n_out, n_in)
            else:
                shapes[name + ".lr.w"] = (r, n_in)
                shapes[name + ".w"] = (n_out, r)
    return shapes


def swin_shapes(arch: SwinArch) -> dict[str, tuple[int, ...]]:
    shapes = {"pe.w": (arch.embed_dim, arch.in_chans * arch.patch_size**2)}
    i = 0
    for st in arch.stages:
        for _ in st.blocks:
            shapes[f"b{i}.qkv.w"] = (3 * st.dim, st.dim)
            shapes[f"b{i}.proj.w"] = (st.dim, st.dim)
            shapes[f"b{i}.fc1.w"] = (st.mlp_hidden, st.dim)
            shapes[f"b{i}.fc2.w"] = (st.dim, st.mlp_hidden)
            i += 1
    shapes["head.w"] = (arch.num_classes, arch.stages[-1].dim)
    return shapes


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            name="vit",
            arch_type=VitArch,
            accepts=_is_vit,
            arch_of=vit_arch,
            shadow_forward=shadow_forward,
            quantize_weights=quantize_vit_weights,
            build_plan=int_vit.ModelPlan.build,
            reference=int_vit.vit_reference_forward,
            expected_shapes=vit_shapes,
            logit_point="lnf",
        ),
        Family(
            name="swin",
            arch_type=SwinArch,
            accepts=_is_swin,
            arch_of=swin_arch,
            shadow_forward=shadow_forward_swin,
            quantize_weights=quantize_swin_weights,
            build_plan=int_swin.SwinPlan.build,
            reference=int_swin.swin_reference_forward,
            expected_shapes=swin_shapes,
            logit_point="pool",
        ),
    )
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"model family {name!r} is unknown; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_of_model(model) -> Family:
    """The family of a float model; ValueError for a model no family converts."""
    for family in FAMILIES.values():
        if family.accepts(model):
            return family
    return FAMILIES["vit"]  # its arch_of raises the error that names what is unsupported


#: The storage dtype of an integer model's tensors, by the last part of their name.
TENSOR_DTYPES = {
    "w": "int8",
    "b": "int32",
    "cls_q": "int32",
    "pos_q": "int32",
    "ws": "float32",
    "gamma": "float32",
    "beta": "float32",
    "mask": "int8",
    "relbias": "float32",
}


def check_tensor_shapes(arch: Arch, tensors: dict[str, np.ndarray], what: str) -> None:
    """ValueError naming the first tensor that is wrong for ``arch``:

    - a name no integer model has, or a dtype other than its storage dtype (int8 weights,
      int32 biases, ...);
    - a weight whose shape does not fit the arch, or a missing one; every linear weight
      ``X.w`` needs its bias ``X.b`` and per-channel weight scales ``X.ws`` of one value per
      output row;
    - a weight scale that is not finite and > 0, or a float tensor holding NaN or inf."""
    for name, t in tensors.items():
        kind = name.split(".")[-1]
        if kind not in TENSOR_DTYPES:
            raise ValueError(f"{what}: tensor {name!r} is not one an integer model has")
        want = TENSOR_DTYPES[kind]
        if str(t.dtype) != want:
            raise ValueError(f"{what}: tensor {name!r} is {t.dtype}; it must be {want}")
        if want == "float32" and not np.isfinite(t).all():
            raise ValueError(f"{what}: tensor {name!r} holds NaN or inf")
        if kind == "ws" and not (t > 0).all():
            bad = float(t.reshape(-1)[np.argmin(t.reshape(-1) > 0)])
            raise ValueError(f"{what}: weight scales {name!r} must be > 0; one is {bad}")
    for name, shape in get_family(arch.family).expected_shapes(arch).items():
        _check_shape(tensors, name, shape, what)
        if name.endswith(".w"):
            for part in ("b", "ws"):
                _check_shape(tensors, f"{name[:-2]}.{part}", (shape[0],), what)


def _check_shape(
    tensors: dict[str, np.ndarray], name: str, shape: tuple[int, ...], what: str
) -> None:
    if name not in tensors:
        raise ValueError(f"{what}: tensor {name!r} is missing for its arch")
    got = tuple(int(s) for s in tensors[name].shape)
    if got != shape:
        raise ValueError(f"{what}: tensor {name!r} has shape {got}; its arch gives {shape}")
