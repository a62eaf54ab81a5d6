"""bf16 autocast against fp32 on `ViTForFER`: throughput, and the loss after the same steps from the same weights
on the same batch (how far bf16 rounding moves training)."""

import torch

from workloads import Bench, build_model, make_batch


def run(bench: Bench) -> None:
    workload = bench.workload
    cases = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        # No dropout: the two runs would draw different masks, and the loss gap would measure those, not bf16.
        model = build_model("ViTForFER", workload, classifier_dropout=0.0, classifier_output_dropout=0.0)
        cases[name] = (model, make_batch(model, workload.batch_size, workload.device), dtype)
    steps = bench.compare("precision", cases, baseline="fp32")["train"]
    fp32, bf16 = steps["fp32"].final_loss(), steps["bf16"].final_loss()
    bench.report.add(
        "precision",
        "train.bf16.final_loss_difference",
        abs(bf16 - fp32) / fp32,
        "× fp32 loss",
        note=f"after {len(steps['fp32'].losses)} steps: fp32 {fp32:.4f}, bf16 {bf16:.4f}",
    )
