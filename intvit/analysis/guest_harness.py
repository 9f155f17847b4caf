"""Run a model ``runs`` times in one thread, then save this process's ``/proc/self/maps``.

This file is a standalone script for the emulated (or counted) machine's Python: it imports
numpy and the runtime it drives (``tvm``, ``onnxruntime`` or ``ai_edge_litert``), never intvit
or torch.

    python guest_harness.py tvm|onnxruntime|litert MODEL INPUT.npy RUNS MAPS_OUT [OUTPUT.npy]
    python guest_harness.py tvm-func KERNEL ARRAYS.npz RUNS MAPS_OUT

``tvm``: a Relax VM library (``main`` takes the one input). ``onnxruntime``: an ONNX model run
with one intra-op and one inter-op thread, sequential execution. ``litert``: a TFLite model in
LiteRT's interpreter, one thread, through its default XNNPACK delegate. ``tvm-func``: one compiled
kernel's ``main`` called on the ``.npz``'s arrays in order (inputs, then outputs).

A counted pair of runs (1 and 2 inferences) differs by one steady-state inference: the first
inference's one-time work is in both. With ``OUTPUT.npy``, the last inference's (first) output
is saved there, for the caller to check against the reference.
"""

from __future__ import annotations

import os
import sys


def _tvm_runner(model: str, image):
    import tvm
    from tvm.runtime.vm import VirtualMachine

    vm = VirtualMachine(tvm.runtime.load_module(model), tvm.cpu())
    x = tvm.runtime.tensor(image)
    main = vm["main"]
    return lambda: main(x)


def _onnxruntime_runner(model: str, image):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: image})


def _litert_runner(model: str, image):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=model, num_threads=1)  # XNNPACK by default
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    if detail["dtype"] != image.dtype:  # a full-integer model takes its quantized input
        import numpy as np

        scale, zero = detail["quantization"]
        info = np.iinfo(detail["dtype"])
        image = np.clip(np.round(image / scale) + zero, info.min, info.max)
        image = image.astype(detail["dtype"])
    index, output = detail["index"], interpreter.get_output_details()[0]["index"]

    def run():
        interpreter.set_tensor(index, image)
        interpreter.invoke()
        return [interpreter.get_tensor(output)]

    return run


def _tvm_func_runner(model: str, arrays):
    import tvm

    main = tvm.runtime.load_module(model)["main"]
    args = [tvm.runtime.tensor(arrays[f"arr_{i}"]) for i in range(len(arrays.files))]
    return lambda: main(*args)


RUNNERS = {
    "tvm": _tvm_runner,
    "onnxruntime": _onnxruntime_runner,
    "litert": _litert_runner,
    "tvm-func": _tvm_func_runner,
}


def main(argv: list[str]) -> int:
    runtime, model, image_path, runs, maps_out = argv[:5]
    os.environ.setdefault("TVM_NUM_THREADS", "1")
    import numpy as np

    image = np.load(image_path)
    run = RUNNERS[runtime](model, image)
    out = None
    for _ in range(int(runs)):
        out = run()
    if len(argv) > 5 and out is not None:  # after the counted work: a TVM tensor, or ORT's list
        np.save(argv[5], out[0] if isinstance(out, list) else out.numpy())
    with open("/proc/self/maps") as src, open(maps_out, "w") as dst:
        dst.write(src.read())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
