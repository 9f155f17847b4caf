"""The input a library's ``main`` takes, compiled into the library itself.

A manifest (``model.so.json``) is a separate, editable file. If its input shape, batch or dtype
no longer matches the library, ``main`` fails on the device, and TVM's RPC error reaches the
user as "Error caught from RPC call:" with nothing after it. So every library that
:func:`intvit.deploy.compile.compile_relax` builds carries a second Relax function,
:data:`SIGNATURE_FUNC`, that returns ``main``'s input as one int64 tensor: ``[type code,
bits, lanes, ndim, *shape]`` (DLPack's type codes: 0 int, 1 uint, 2 float). A bench reads
it on the device right after uploading the library, before ``main`` runs, and names the
mismatch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tvm
from tvm import relax

#: The Relax function every intvit library exports beside ``main``.
SIGNATURE_FUNC = "intvit_input_signature"

_TYPE_CODES = {"int": 0, "uint": 1, "float": 2}
_TYPE_NAMES = {code: name for name, code in _TYPE_CODES.items()}


def encode_signature(shape: Sequence[int], dtype: str) -> np.ndarray:
    """``[type code, bits, lanes, ndim, *shape]`` (int64) of an input ``shape``/``dtype``."""
    dt = tvm.DataType(dtype)
    name = next(n for n in ("uint", "int", "float") if dtype.startswith(n))
    return np.array([_TYPE_CODES[name], dt.bits, dt.lanes, len(shape), *shape], dtype="int64")


def decode_signature(values: Sequence[int]) -> tuple[tuple[int, ...], str]:
    """``(shape, dtype)`` from :func:`encode_signature`'s array; ValueError if malformed."""
    values = [int(v) for v in values]
    if len(values) < 4 or values[0] not in _TYPE_NAMES or len(values) != 4 + values[3]:
        raise ValueError(f"malformed input signature {values}")
    code, bits, lanes, ndim = values[:4]
    dtype = f"{_TYPE_NAMES[code]}{bits}" + (f"x{lanes}" if lanes != 1 else "")
    return tuple(values[4 : 4 + ndim]), dtype


def with_input_signature(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with :data:`SIGNATURE_FUNC` added: a Relax function of no arguments returning
    ``main``'s input signature as a constant (``main`` must take one tensor)."""
    (param,) = mod["main"].params
    shape = [int(s) for s in param.ty.shape.values]
    table = relax.const(encode_signature(shape, str(param.ty.dtype)))
    func = relax.Function([], table).with_attr("global_symbol", SIGNATURE_FUNC)
    out = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
    out[SIGNATURE_FUNC] = func
    return relax.transform.Normalize()(out)


def signature_mismatch(
    expected: tuple[tuple[int, ...], str], manifest_shape: Sequence[int], manifest_dtype: str
) -> str | None:
    """What differs between the library's input (``expected``) and its manifest's, in words;
    None when they agree."""
    shape, dtype = expected
    problems = []
    if tuple(manifest_shape) != tuple(shape):
        if len(manifest_shape) == len(shape) and tuple(manifest_shape[1:]) == tuple(shape[1:]):
            problems.append(f"batch {manifest_shape[0]}, the library takes batch {shape[0]}")
        else:
            problems.append(f"input_shape {list(manifest_shape)}, the library takes {list(shape)}")
    if manifest_dtype != dtype:
        problems.append(f"input_dtype {manifest_dtype}, the library takes {dtype}")
    return "; ".join(problems) or None
