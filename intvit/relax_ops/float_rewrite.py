"""Integer nonlinear operators inside an otherwise float Relax graph.

For a model imported with ``tvm.relax.frontend.torch.from_exported_program``: every
``R.nn.softmax`` (last axis), ``R.nn.gelu`` and ``R.nn.layer_norm`` (last axis, constant
gamma/beta) becomes *quantize -> integer kernel -> dequantize*, with static scales calibrated
on the torch model. Sites are matched by execution order: the torch calibration records the
ops in the order the exported program runs them, which is the order of the Relax dataflow.
The integers around each op are 16 bits wide (int8 would add int8 activation error to a graph
that is otherwise float).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from intvit.relax_ops import ops
from intvit.topi.registry import get_variant

#: Each replaced op takes and gives 16-bit integers (the graph around it stays float).
Q16 = 2**15 - 1


@dataclass
class Site:
    op: str
    in_amax: float
    out_amax: float


def calibrate_sites(model, images: np.ndarray) -> list[Site]:
    """Run the float torch model, recording every softmax / GELU / LayerNorm in order."""
    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    names = {
        F.softmax: "softmax",
        torch.Tensor.softmax: "softmax",
        torch.softmax: "softmax",
        F.gelu: "gelu",
        F.layer_norm: "layer_norm",
    }
    sites: list[Site] = []
    sites_per_run: list[Site] = []

    class Record(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            op = names.get(func)
            if op is not None:
                x_max = float(args[0].detach().abs().max())
                sites_per_run.append(Site(op, x_max, float(out.detach().abs().max())))
            return out

    with torch.no_grad():
        for start in range(0, len(images), 32):
            sites_per_run.clear()
            with Record():
                model(torch.from_numpy(images[start : start + 32]))
            if not sites:
                sites = [Site(s.op, s.in_amax, s.out_amax) for s in sites_per_run]
            else:
                for s, t in zip(sites, sites_per_run, strict=True):
                    s.in_amax, s.out_amax = max(s.in_amax, t.in_amax), max(s.out_amax, t.out_amax)
    if not sites:
        raise ValueError("the model ran no softmax, GELU or LayerNorm to replace")
    return sites


def _quantize(bb, x, scale: float, lo: int, hi: int, dtype: str):
    q = relax.op.divide(x, relax.const(scale, "float32"))
    q = relax.op.clip(relax.op.round(q), lo, hi)
    return bb.emit(relax.op.astype(q, dtype))


def _dequantize(bb, q, scale: float):
    return relax.op.multiply(bb.emit(relax.op.astype(q, "float32")), relax.const(scale, "float32"))


def _softmax(bb, call, site: Site, index: int):
    """Softmax over the last axis: 16-bit logits in, 16-bit probabilities out (edge)."""
    x = call.args[0]
    shape = [int(d) for d in x.ty.shape]
    if int(call.attrs.axis) not in (-1, len(shape) - 1):
        raise ValueError(f"softmax #{index} is not over the last axis")
    s = max(site.in_amax, 1e-6) / Q16
    params = get_variant("softmax", "edge").make_params(s, shape[-1], out_bits=16)
    q = _quantize(bb, x, s, -Q16, Q16, "int16")
    return _dequantize(bb, ops.softmax(bb, q, params), params.out_scale)


def _gelu(bb, call, site: Site, index: int):
    """GELU at the calibrated input and output ranges, 16 bits each way (edge)."""
    s, so = max(site.in_amax, 1e-6) / Q16, max(site.out_amax, 1e-6) / Q16
    params = get_variant("gelu", "edge").make_params(s, so, in_bits=15, out_dtype="int16")
    q = _quantize(bb, call.args[0], s, -Q16, Q16, "int16")
    return _dequantize(bb, ops.gelu(bb, q, params), so)


def _layer_norm(bb, call, site: Site, index: int):
    """LayerNorm over the last axis with constant gamma/beta folded into the kernel's
    per-channel requantization, 16-bit output (edge)."""
    x = call.args[0]
    shape = [int(d) for d in x.ty.shape]
    axes = [int(a) for a in call.attrs.axes]
    gamma, beta = call.args[1], call.args[2]
    if axes not in ([-1], [len(shape) - 1]) or not all(
        isinstance(c, tvm.ir.expr.GenericConst) for c in (gamma, beta)
    ):
        raise ValueError(
            f"layer_norm #{index} needs the last axis and constant gamma/beta "
            "(import with keep_params_as_input=False)"
        )
    s, so = max(site.in_amax, 1e-6) / Q16, max(site.out_amax, 1e-6) / Q16
    params = get_variant("layernorm", "edge").make_params(
        shape[-1],
        gamma.value.numpy().astype(np.float64),
        beta.value.numpy().astype(np.float64),
        so,
        in_bits=15,
        out_dtype="int16",
    )
    q = _quantize(bb, x, s, -Q16, Q16, "int32")
    return _dequantize(bb, ops.layernorm(bb, q, params), so)


#: Each replaceable Relax op (``relax.nn.<name>``) and what replaces it:
#: ``(builder, call, its calibrated site, its index) -> float output``.
REWRITES = {"softmax": _softmax, "gelu": _gelu, "layer_norm": _layer_norm}
OPS = tuple(REWRITES)


@mutator
class _Rewriter(PyExprMutator):
    def __init__(self, mod, sites: list[Site], only: tuple[str, ...]):
        super().__init__(mod)
        self.sites = sites
        self.only = only
        self.next = 0
        self.ops = {tvm.ir.Op.get(f"relax.nn.{name}"): name for name in OPS}

    def visit_call_(self, call):
        call = super().visit_call_(call)
        name = self.ops.get(call.op) if isinstance(call.op, tvm.ir.Op) else None
        if name is None:
            return call
        if self.next >= len(self.sites) or self.sites[self.next].op != name:
            raise ValueError(f"nonlinear op #{self.next} ({name}) does not match the calibration")
        site = self.sites[self.next]
        self.next += 1
        if name not in self.only:
            return call
        return REWRITES[name](self.builder_, call, site, self.next - 1)


def integer_nonlinear(
    mod: tvm.IRModule, sites: list[Site], only: tuple[str, ...] = OPS
) -> tvm.IRModule:
    """Replace the float nonlinear ops of ``mod['main']`` (those named in ``only``) by integer
    ones."""
    rewriter = _Rewriter(mod, sites, tuple(only))
    func = rewriter.visit_expr(mod["main"])
    if rewriter.next != len(sites):
        raise ValueError(f"rewrote {rewriter.next} ops but calibrated {len(sites)}")
    out = rewriter.builder_.get()
    out["main"] = func
    return out
