"""Activation checkpointing: step time on against off on `ViTForFER`, and peak step memory of each setting — ours
and transformers' `ViTForImageClassification` — each measured in its own subprocess.

`every_n_layers=n` checkpoints every n-th encoder layer: the others keep their activations, trading memory back
for speed."""

from harness import ratios
from memory import peak_step_memory
from workloads import REFERENCE, Bench, TrainStep, Workload, build_model, make_batch


def run(bench: Bench, every_n_layers: list[int], memory_workload: Workload) -> None:
    report = bench.report
    workload = bench.workload
    steps = {}
    for n in [0, *every_n_layers]:
        model = build_model("ViTForFER", workload)
        if n:
            model.activation_checkpointing_enable(every_n_layers=n)
        batch = make_batch(model, workload.batch_size, workload.device)
        steps[f"every_{n}" if n else "off"] = TrainStep(model, batch, workload.autocast_dtype)
    readings = bench.time(steps)
    for name, ratio in ratios(readings, "off").items():
        report.add("checkpointing", f"train.{name}.time_ratio", ratio, "× off")

    note = f"batch {memory_workload.batch_size}, above the built model"
    for name in (REFERENCE, "ViTForFER"):
        off = peak_step_memory(name, memory_workload)
        report.add("checkpointing", f"memory.{name}.off", off, "GB", note=note, scale=1e-9)
        settings = every_n_layers if name == "ViTForFER" else [1]
        for n in settings:
            peak = peak_step_memory(name, memory_workload, every_n_layers=n)
            report.add("checkpointing", f"memory.{name}.every_{n}", peak, "GB", note=note, scale=1e-9)
            report.add("checkpointing", f"memory.{name}.every_{n}.saving", 1 - peak / off, "of off")
