"""The data pipeline: registered RGB + thermal pairs decoded from files (JPEG and 16-bit PNG), augmented with the
paired training transforms, normalised and collated, per second of one data-loader worker — against how fast the
models consume them."""

import tempfile

import torch

from vit_fer.data import load_fer_dataset
from vit_fer.image_processing_vit_fer import ViTFERImageProcessor
from vit_fer.synthetic import synthesize_dataset
from vit_fer.transforms import FERDataCollator, with_fer_transforms
from workloads import Bench

# Source images larger than the model input, so the resize (part of the real cost) is exercised.
SOURCE_SIZE_FACTOR = 8 / 7


def run(bench: Bench, num_samples: int = 64) -> None:
    workload, report = bench.workload, bench.report
    with tempfile.TemporaryDirectory() as folder:
        source_size = round(workload.image_size * SOURCE_SIZE_FACTOR)
        synthesize_dataset(f"{folder}/data", num_samples=num_samples, image_size=source_size, progress=False)
        dataset = load_fer_dataset(f"{folder}/data", validation_size=0.0, test_size=0.0)
        processor = ViTFERImageProcessor(size=workload.image_size)
        train = with_fer_transforms(dataset, processor)["train"]
        loader = torch.utils.data.DataLoader(
            train, batch_size=workload.batch_size, collate_fn=FERDataCollator(), num_workers=0
        )

        def epoch() -> None:
            for _ in loader:
                pass

        # A data-loader worker process runs torch on one thread; so does this measurement.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            seconds = bench.time({"pipeline": epoch})["pipeline"]
        finally:
            torch.set_num_threads(threads)

    pairs = bench.throughput(seconds, samples=len(train))
    report.add("data", "pairs_per_worker", pairs, "pairs/s", note=f"{source_size} px JPEG + 16-bit PNG, augmented")
    for name in ("early-concat", "late-concat"):
        consumer = report.get(f"models.train.{name}")
        if consumer is not None:
            report.add("data", f"workers_to_feed.train.{name}", consumer.value / pairs.median, "workers",
                       note=f"{name} trains {consumer.value:.3g} pairs/s")
