"""Graph builders: an integer model artifact -> a Relax IRModule whose ``main`` takes the int8
image ``[B, C, H, W]`` and returns the int32 logit accumulators ``[B, heads_out, classes]``,
computing exactly what :func:`intvit.quant.reference.reference_forward` computes.
"""

from __future__ import annotations

import tvm
from tvm import relax

from intvit.quant.int_model import IntModel
from intvit.relax_ops import ops
from intvit.topi.requantize_params import RequantParams


def build_module(
    model: IntModel, batch: int = 1, gemm_kernels: tuple = (), cores: int = 2
) -> tvm.IRModule:
    """The Relax module of ``model`` for a fixed batch size; with ``gemm_kernels`` (a tuple of
    :class:`~intvit.schedules.intrinsics.GemmKernel`, in the order each GEMM tries them, as
    :func:`~intvit.schedules.intrinsics.gemm_kernels_for` gives them), GEMMs take weights
    packed for the first that takes them and requantize in their epilogue, and a low-rank
    linear's two GEMMs run as one kernel over ``cores`` chunks of rows."""
    if batch < 1:
        raise ValueError(f"batch={batch} must be >= 1")
    with ops.gemm_kernels(gemm_kernels, cores):
        return _build(model, batch)


def _build(model: IntModel, batch: int) -> tvm.IRModule:
    a = model.arch
    image = relax.Var(
        "image", relax.TensorType((batch, a.in_chans, a.img_size, a.img_size), "int8")
    )
    bb = relax.BlockBuilder()
    with bb.function("main", [image]):
        with bb.dataflow():
            body = GRAPH_BUILDERS[model.family]
            out = bb.emit_output(body(bb, model, image, batch))
        bb.emit_func_output(out)
    return bb.get()


def _merge_heads(bb, x, b, n, heads, d):
    x = ops.reshape(bb, x, (b, heads, n, d))
    return ops.reshape(bb, ops.permute(bb, x, (0, 2, 1, 3)), (b, n, heads * d))


def _low_rank_input(bb, t, p, bp, layer, h):
    """``h`` through the first factor of block ``p``'s ``layer`` when it is low-rank (int8,
    requantized; computed in the layer's own kernel where it can be, see
    :class:`~intvit.relax_ops.ops.LowRankInput`), else ``h``."""
    rq = bp.low_rank.get(layer)
    if rq is None:
        return h
    name = f"{p}{layer}"
    return ops.LowRankInput(h, t[name + ".lr.w"], t[name + ".lr.b"], rq, f"{name}_lr")


def _attention(bb, t, p, bp, h, b, n, a, heads, score_bias=None, mask=None, nw=1, skip=None):
    """int8 ``h [b, n, D]`` -> int32 proj accumulator ``[b, n, D]`` (``a`` attention channels
    in ``heads`` heads); with ``skip = (x, lo, hi)``, the residual ``x + attention(h)`` (added
    in the projection's epilogue)."""
    d = a // heads
    # q, k and v: one GEMM (one pass over h, three times the columns), then one kernel that
    # lays the heads out for the two attention matmuls (v transposed)
    rq = RequantParams.concat([bp.rq_q, bp.rq_k, bp.rq_v], [a] * 3)
    h = _low_rank_input(bb, t, p, bp, "qkv", h)
    qkv = ops.dense(bb, h, t[p + "qkv.w"], t[p + "qkv.b"], name=f"{p}qkv", rq=rq)
    q, k, vt = ops.split_heads(bb, qkv, heads)
    if score_bias is not None:
        scores = ops.batch_matmul(bb, q, k)
        scores = ops.add_score_bias(bb, scores, score_bias, mask, nw, heads, bp.rq_scores)
    else:
        scores = ops.batch_matmul(bb, q, k, rq=bp.rq_scores)
    probs = ops.softmax(bb, scores, bp.softmax)
    ctx = ops.batch_matmul(bb, probs, vt, rq=bp.rq_ctx)
    ctx = _low_rank_input(bb, t, p, bp, "proj", _merge_heads(bb, ctx, b, n, heads, d))
    w, bias = t[p + "proj.w"], t[p + "proj.b"]
    if skip is not None:
        x, lo, hi = skip
        return ops.dense_residual(bb, ctx, w, bias, f"{p}proj", x, bp.rq_skip1, bp.rq_proj, lo, hi)
    return ops.dense(bb, ctx, w, bias, name=f"{p}proj")


def _mlp(bb, t, p, bp, x, lo, hi):
    h = _low_rank_input(bb, t, p, bp, "fc1", ops.layernorm(bb, x, bp.ln2))
    f = ops.dense(bb, h, t[p + "fc1.w"], t[p + "fc1.b"], name=f"{p}fc1", rq=bp.rq_fc1)
    if bp.gelu is not None:  # GELU-less models: ReLU is rq_fc1's uint8 saturation
        f = ops.gelu(bb, f, bp.gelu)
    f = _low_rank_input(bb, t, p, bp, "fc2", f)
    w, b = t[p + "fc2.w"], t[p + "fc2.b"]
    return ops.dense_residual(bb, f, w, b, f"{p}fc2", x, bp.rq_skip2, bp.rq_fc2, lo, hi)


def _vit(bb, model: IntModel, image, batch: int):
    a, t, plan = model.arch, model.tensors, model.plan
    lo, hi = plan.residual_range
    n = a.tokens
    x = ops.im2col(bb, image, a.patch_size)
    x = ops.dense(bb, x, t["pe.w"], t["pe.b"], name="patch_embed", rq=plan.rq_patch)
    x = ops.add_tokens(bb, x, t["cls_q"], t["pos_q"], lo, hi)
    for i, (bp, blk) in enumerate(zip(plan.blocks, a.blocks, strict=True)):
        p = f"b{i}."
        h = ops.layernorm(bb, x, bp.ln1)
        x = _attention(bb, t, p, bp, h, batch, n, blk.attn_dim, blk.heads, skip=(x, lo, hi))
        x = _mlp(bb, t, p, bp, x, lo, hi)
    h = ops.layernorm(bb, x, plan.lnf)
    outs = [ops.dense(bb, ops.take_token(bb, h, 0), t["head.w"], t["head.b"])]
    if a.distilled:
        outs.append(ops.dense(bb, ops.take_token(bb, h, 1), t["head_dist.w"], t["head_dist.b"]))
    outs = [ops.reshape(bb, o, (batch, 1, a.num_classes)) for o in outs]
    return outs[0] if len(outs) == 1 else bb.emit(relax.op.concat(outs, axis=1))


def _swin(bb, model: IntModel, image, batch: int):
    a, t, plan = model.arch, model.tensors, model.plan
    lo, hi = plan.residual_range
    grid = a.img_size // a.patch_size
    x = ops.im2col(bb, image, a.patch_size)
    x = ops.dense(bb, x, t["pe.w"], t["pe.b"], name="patch_embed", rq=plan.rq_patch)
    x = ops.layernorm(bb, x, plan.ln_patch)
    x = bb.emit(relax.op.astype(x, "int32"))
    i = 0
    for s, (st, sp) in enumerate(zip(a.stages, plan.stages, strict=True)):
        dim = st.dim
        if st.merge:
            c = dim // 2
            m = ops.reshape(bb, x, (batch, grid // 2, 2, grid // 2, 2, c))
            m = ops.permute(bb, m, (0, 1, 3, 4, 2, 5))
            grid //= 2
            m = ops.layernorm(bb, ops.reshape(bb, m, (batch, grid * grid, 4 * c)), sp.ln_merge)
            x = ops.dense(
                bb, m, t[f"st{s}.reduce.w"], t[f"st{s}.reduce.b"], f"st{s}_merge", sp.rq_reduce
            )
        for blk, bp in zip(st.blocks, sp.blocks, strict=True):
            p = f"b{i}."
            ws, sh = blk.window, blk.shift
            nw = (grid // ws) ** 2
            h = ops.windows(bb, ops.layernorm(bb, x, bp.ln1), grid, ws, sh)
            mask = t[p + "mask"].astype(bool) if sh else None
            acc = _attention(
                bb, t, p, bp, h, batch * nw, ws * ws, dim, st.heads, bp.score_bias, mask, nw
            )
            acc = ops.unwindows(bb, acc, grid, ws, sh)
            x = ops.residual_add(bb, x, acc, bp.rq_skip1, bp.rq_proj, lo, hi)
            x = _mlp(bb, t, p, bp, x, lo, hi)
            i += 1
    h = ops.layernorm(bb, x, plan.lnf)
    pooled = ops.requantize(bb, ops.token_sum(bb, h), plan.rq_pool)
    logits = ops.dense(bb, pooled, t["head.w"], t["head.b"])
    return ops.reshape(bb, logits, (batch, 1, a.num_classes))


#: The graph builder of each model family (:data:`intvit.quant.family.FAMILIES`).
GRAPH_BUILDERS = {"vit": _vit, "swin": _swin}
