"""Serving on ONNX Runtime against PyTorch eager: `ViTForFER` exported by `vit-fer export-onnx`
(vit_fer/onnx_export.py) and run by an `onnxruntime.InferenceSession` on the CPU with as many threads as torch,
against the same model's PyTorch forward (eval, no autograd, the workload's attention implementation): same weights,
same batch, same run. Also reported: the largest logit difference between the two on the timed batch. Always fp32
(ONNX Runtime serves the fp32 graph)."""

import tempfile
from pathlib import Path

import numpy as np
import torch

from harness import ratios
from workloads import Bench, InferenceStep, build_model, make_batch


def run(bench: Bench) -> None:
    import onnxruntime

    from vit_fer import ViTFERImageProcessor
    from vit_fer.onnx_export import export_onnx

    workload = bench.workload
    if workload.device.type != "cpu":
        print("[inference] skipped: the ONNX Runtime comparison runs on the CPU only")
        return
    model = build_model("ViTForFER", workload).eval()
    batch = make_batch(model, workload.batch_size, workload.device)
    inputs = {"pixel_values": batch["pixel_values"]}
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        ViTFERImageProcessor(size=workload.image_size).save_pretrained(folder)
        path = export_onnx(folder, Path(folder) / "onnx" / "model.onnx")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {name: value.numpy() for name, value in inputs.items()}
    cases = {"pytorch-eager": InferenceStep(model, inputs), "onnxruntime": lambda: session.run(["logits"], feed)}
    readings = bench.time(cases)
    note = f"ViTForFER {workload.size}, batch {workload.batch_size}, fp32, {torch.get_num_threads()} threads"
    for name, seconds in readings.items():
        bench.report.add("inference", name, bench.throughput(seconds), "samples/s", note=note)
    speedup = ratios(readings, "pytorch-eager", speedup=True)["onnxruntime"]
    bench.report.add("inference", "onnxruntime.speedup", speedup, "× pytorch-eager")
    with torch.inference_mode():
        expected = model(**inputs).logits.numpy()
    difference = float(np.abs(session.run(["logits"], feed)[0] - expected).max())
    bench.report.add("inference", "onnxruntime.max_abs_logit_difference", difference, "")
