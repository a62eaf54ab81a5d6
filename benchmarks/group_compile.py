"""`torch.compile` (inductor) against eager PyTorch on `ViTForFER`: step throughput once compiled, and the
one-time compilation cost (the first call of each step)."""

import time

import torch

from workloads import Bench, InferenceStep, TrainStep, build_model, make_batch


def run(bench: Bench) -> None:
    workload = bench.workload
    cases = {}
    for name in ("eager", "compiled"):
        model = build_model("ViTForFER", workload)
        batch = make_batch(model, workload.batch_size, workload.device)
        cases[name] = (torch.compile(model) if name == "compiled" else model, batch, workload.autocast_dtype)
    for mode, step_class in (("train", TrainStep), ("inference", InferenceStep)):
        model, batch, dtype = cases["compiled"]
        start = time.perf_counter()
        step_class(model, batch, dtype)()
        bench.report.add("compile", f"{mode}.compile_seconds", time.perf_counter() - start, "s", note="first call")
    bench.compare("compile", cases, baseline="eager")
