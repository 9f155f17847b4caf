"""Golden vectors: a few inputs and the exact integer outputs the reference forward gives for
them, stored in a library's manifest at compile time, so that the library proves on any
machine, at any later time, that it computes what was compiled.

An input is named, not stored: ``random:<seed>`` is NumPy's PCG64 ``integers(-128, 128)``
of the library's input shape (stable across NumPy versions), ``fill:<v>`` is every element
``v`` (the int8 extremes drive every saturation path). The output is stored whole: the int32
logit accumulators ``[batch, 1, classes]``.

:func:`intvit.deploy.verify.verify_library` checks them with the TVM runtime and NumPy alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The inputs every integer library carries: two random images and the two int8 extremes.
GOLDEN_INPUTS = ("random:1", "random:2", "fill:-128", "fill:127")


@dataclass(frozen=True)
class GoldenVector:
    """One named input and the reference forward's exact output for it."""

    input: str
    output_shape: tuple[int, ...]
    output_dtype: str
    output: tuple[int, ...]  # flattened

    def as_dict(self) -> dict:
        return {
            "input": self.input,
            "output_shape": list(self.output_shape),
            "output_dtype": self.output_dtype,
            "output": list(self.output),
        }

    @classmethod
    def from_dict(cls, d: dict) -> GoldenVector:
        vector = cls(
            str(d["input"]),
            tuple(int(x) for x in d["output_shape"]),
            str(d["output_dtype"]),
            tuple(int(x) for x in d["output"]),
        )
        make_input(vector.input, (1,), "int8")  # the name is one this module can make
        if int(np.prod(vector.output_shape)) != len(vector.output):
            raise ValueError(
                f"golden vector {vector.input!r}: {len(vector.output)} output values for "
                f"shape {list(vector.output_shape)}"
            )
        return vector

    def expected(self) -> np.ndarray:
        return np.asarray(self.output, dtype=self.output_dtype).reshape(self.output_shape)

    def matches(self, got: np.ndarray) -> bool:
        """Whether ``got`` is this vector's output, bit for bit."""
        expected = self.expected()
        return got.shape == expected.shape and bool(np.array_equal(got, expected))


def make_input(name: str, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """The input ``name`` (``random:<seed>`` or ``fill:<value>``) of ``shape`` and ``dtype``;
    ValueError for a name that is neither."""
    kind, _, arg = name.partition(":")
    try:
        value = int(arg)
    except ValueError:
        raise ValueError(f"golden input {name!r}: {arg!r} is not an integer") from None
    info = np.iinfo(dtype)
    if kind == "random":
        rng = np.random.default_rng(value)
        return rng.integers(info.min, info.max + 1, shape, dtype=dtype)
    if kind == "fill":
        if not info.min <= value <= info.max:
            raise ValueError(f"golden input {name!r}: {value} does not fit {dtype}")
        return np.full(shape, value, dtype=dtype)
    raise ValueError(f"golden input {name!r} is not random:<seed> or fill:<value>")


def golden_vectors(int_model, input_shape: tuple[int, ...], input_dtype: str = "int8"):
    """The :data:`GOLDEN_INPUTS` of ``input_shape`` and the reference forward's outputs for
    them (``int_model`` an :class:`~intvit.quant.int_model.IntModel`)."""
    from intvit.quant.reference import reference_forward

    vectors = []
    for name in GOLDEN_INPUTS:
        out = np.asarray(reference_forward(int_model, make_input(name, input_shape, input_dtype)))
        flat = tuple(int(x) for x in out.reshape(-1))
        vectors.append(GoldenVector(name, tuple(out.shape), str(out.dtype), flat))
    return vectors


def check_golden(run, manifest) -> list[tuple[str, bool]]:
    """``(input name, bit-exact)`` for each golden vector of ``manifest``, ``run(image)``
    giving the library's output (on whatever device runs it)."""
    results = []
    for vector in manifest.golden:
        image = make_input(vector.input, manifest.input_shape, manifest.input_dtype)
        results.append((vector.input, vector.matches(np.asarray(run(image)))))
    return results
