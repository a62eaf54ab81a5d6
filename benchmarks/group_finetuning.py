"""Classifier-only fine-tuning against full fine-tuning on `ViTForFER`, per step and per epoch:

- full: every parameter trains;
- frozen: the encoder is frozen but runs on the images every step (its forward only; no backward through it);
- cached: the encoder's [CLS] features are extracted once (`extract_features`) and every epoch trains the head on
  them (`forward(encoder_features=...)`).

An epoch is the same number of steps in every setting, so the epoch speed-up is the step speed-up; the cached one
is shown with and without the one-time extraction (one inference pass over the data, paid in the first epoch)."""

from harness import Spread, ratios
from workloads import Bench, InferenceStep, TrainStep, build_model, make_batch


def run(bench: Bench) -> None:
    workload, report = bench.workload, bench.report
    models = {name: build_model("ViTForFER", workload) for name in ("full", "frozen", "cached")}
    models["frozen"].freeze_backbone()
    models["cached"].freeze_backbone()
    batch = make_batch(models["full"], workload.batch_size, workload.device)
    cached_batch = {
        "encoder_features": models["cached"].eval().extract_features(batch["pixel_values"]),
        "labels": batch["labels"],
    }
    dtype = workload.autocast_dtype
    steps = {
        "full": TrainStep(models["full"], batch, dtype),
        "frozen": TrainStep(models["frozen"], batch, dtype),
        "cached": TrainStep(models["cached"], cached_batch, dtype),
        # What caching costs once per data set: the encoder's forward in eval mode on every batch.
        "extraction": InferenceStep(build_model("ViTForFER", workload), batch, dtype),
    }
    readings = bench.time(steps)
    for name in ("full", "frozen", "cached"):
        report.add("finetuning", f"train.{name}", bench.throughput(readings[name]), "samples/s")
    speedups = ratios(readings, "full", speedup=True)
    report.add("finetuning", "classifier_only.speedup", speedups["frozen"], "× full step")
    report.add("finetuning", "cached_epoch.speedup", speedups["cached"], "× full epoch", note="features cached")
    first_epoch = Spread.of(
        [full / (cached + extraction) for full, cached, extraction in
         zip(readings["full"], readings["cached"], readings["extraction"])]
    )
    report.add("finetuning", "cached_first_epoch.speedup", first_epoch, "× full epoch", note="extraction included")
