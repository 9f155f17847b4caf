"""Convert an exported float model to LiteRT (TFLite) FP32 and int8 models for XNNPACK.

A standalone script for a Python that has ``litert-torch`` (the ``xnnpack`` extra, or a venv of
its own: it pulls jax and transformers): it imports torch, torchao, numpy and litert_torch,
never intvit, so the model comes as a ``torch.export`` program saved by the caller (same torch
version on both sides).

    python litert_convert.py PROGRAM.pt2 CALIB.npy OUT_PREFIX

Writes ``OUT_PREFIX-fp32.tflite`` and ``OUT_PREFIX-int8.tflite``: the int8 model by PT2E with
the symmetric per-channel config (int8 weights and activations), calibrated on ``CALIB.npy``.
LiteRT's interpreter runs both through its default XNNPACK delegate.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    program_path, calib_path, prefix = argv
    import litert_torch
    import numpy as np
    import torch
    from litert_torch.quantize import pt2e_quantizer, quant_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    model = torch.export.load(program_path).module()
    calib = np.load(calib_path)
    example = (torch.from_numpy(calib[:1]),)
    litert_torch.convert(model, example).export(f"{prefix}-fp32.tflite")
    config = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(config)
    prepared = prepare_pt2e(torch.export.export(model, example).module(), quantizer)
    for i in range(len(calib)):
        prepared(torch.from_numpy(calib[i : i + 1]))
    quantized = convert_pt2e(prepared, fold_quantize=False)
    litert_torch.convert(
        quantized, example, quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer)
    ).export(f"{prefix}-int8.tflite")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
