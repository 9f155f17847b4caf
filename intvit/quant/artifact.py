"""The saved integer model: one ``.safetensors`` file, loadable without torch.

Tensors: the integer weights, biases and tokens, float32 per-channel weight scales and
LayerNorm gamma/beta (folded into dyadic constants on load, by the same helpers as at build).
Metadata (JSON strings): ``format`` (``intvit-int-model``), ``format_version``, ``arch`` (the
typed arch, with its own version), ``config`` (QuantConfig, with its own version), ``scales``
(activation scales), ``m_star``, ``source`` (what it was calibrated from).

Format versions: 2 (this one) saves :class:`~intvit.quant.arch.VitArch`/``SwinArch``; 1 saved
an untyped arch dict, which is migrated on load.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from intvit.paths import atomic_output
from intvit.quant.arch import arch_from_dict
from intvit.quant.config import QuantConfig
from intvit.quant.family import check_tensor_shapes
from intvit.quant.int_model import IntModel

FORMAT = "intvit-int-model"
FORMAT_VERSION = 2
READS = (1, 2)
_REQUIRED = ("format", "format_version", "arch", "config", "scales", "m_star")


def save_int_model(model: IntModel, path: str | Path) -> Path:
    """Write ``model`` to ``path`` atomically, with the usual file mode; ValueError naming the
    file when it cannot be written (a full disk: nothing is left under ``path``)."""
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "arch": json.dumps(model.arch.to_dict(), sort_keys=True),
        "config": model.config.to_json(),
        "scales": json.dumps(model.scales, sort_keys=True),
        "m_star": json.dumps(model.m_star),
        "source": model.source,
    }
    tensors = {k: np.ascontiguousarray(v) for k, v in model.tensors.items()}
    try:
        with atomic_output(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
    except (SafetensorError, OSError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ValueError(f"cannot write the integer model {str(path)!r}: {reason}") from None
    return path


def _scales(raw: object) -> dict[str, float]:
    """The activation scales of the metadata, each named when it is not a finite number
    > 0."""
    if not isinstance(raw, dict):
        raise ValueError(f"scales is a JSON {type(raw).__name__}, not an object")
    scales = {}
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"scale {key!r} = {value!r} is not a number")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"scale {key!r} = {value!r} is not a number") from None
        if not (math.isfinite(number) and number > 0):
            raise ValueError(f"scale {key!r} = {number} must be finite and > 0")
        scales[key] = number
    return scales


def _m_star(raw: object) -> list[int]:
    """The softmax ``m_star`` of every block: a list of integers, each named when not."""
    if not isinstance(raw, list):
        raise ValueError(f"m_star is a JSON {type(raw).__name__}, not a list (one per block)")
    values = []
    for i, value in enumerate(raw):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"m_star[{i}] = {value!r} is not an integer")
        values.append(value)
    return values


def load_int_model(path: str | Path) -> IntModel:
    """Load and validate; a corrupt, foreign or newer file raises ValueError saying which."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"integer model {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(
            f"{str(path)!r} is not a readable integer model (corrupt?): {err}"
        ) from None
    missing = [k for k in _REQUIRED if k not in meta]
    if meta.get("format") != FORMAT or missing:
        raise ValueError(f"{str(path)!r} is not an intvit integer model (missing {missing})")
    version = meta["format_version"]
    if not version.isdigit() or int(version) not in READS:
        raise ValueError(
            f"{str(path)!r} has format version {version}; this intvit reads "
            f"{', '.join(map(str, READS))}"
        )
    where = f"{str(path)!r}"
    try:
        arch = arch_from_dict(json.loads(meta["arch"]))
        scales = _scales(json.loads(meta["scales"]))
        check_tensor_shapes(arch, tensors, "the model")
        model = IntModel(
            arch=arch,
            config=QuantConfig.from_dict(json.loads(meta["config"])),
            scales=scales,
            tensors=tensors,
            m_star=_m_star(json.loads(meta["m_star"])),
            source=meta.get("source", ""),
        )
        _ = model.plan  # derive every constant now: a mismatched file fails here, not later
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"{where} is inconsistent: {err!r}") from None
    return model
