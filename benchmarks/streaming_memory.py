"""Resident memory of loading FER data and iterating it for training, streaming against map-style, as it grows.

For each size (1k, 10k, 50k synthetic RGB + thermal pairs, 32 px) and source — a manifest of image files, and a
`datasets` dataset holding the encoded images (written with `save_to_disk`, read back memory-mapped with
`load_from_disk`) — one fresh subprocess per configuration, single-threaded:

1. `load_fer_dataset(source, streaming=...)` (subject-wise 80/10/10 split; without streaming every image is decoded
   once to check it, as by default);
2. `with_fer_transforms` (the paired training augmentation on train);
3. one epoch of the train split in batches of 64 through `FERDataCollator` (a `torch` DataLoader, no workers;
   map-style shuffled by its sampler, streamed through the shuffle buffer of 1000).

It reports the resident memory after the imports (baseline), the peak resident memory of the whole run (VmHWM of
/proc/self/status), their difference (what the data and its iteration cost), the same for anonymous memory alone
(RssAnon, sampled after loading and after every batch: the process's own heap, without the pages of memory-mapped
Arrow files, which count in VmHWM but which the kernel can drop and re-read at will), and the samples iterated.

    python benchmarks/streaming_memory.py --data_dir /work/stream-data   # generates the 50k pairs once, reuses them

The data lives outside the repository (about 0.8 GB on disk for 50k pairs with their evidence masks).
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from memory import _status_bytes


SIZES = (1_000, 10_000, 50_000)
SOURCES = ("manifest", "dataset")
IMAGE_SIZE = 32
BATCH_SIZE = 64
MIB = 2**20


def prepare(data_dir: Path, sizes=SIZES) -> dict[tuple[str, int], Path]:
    """The sources of every (kind, size): manifests of the first `size` rows of one synthetic benchmark, and
    `save_to_disk` folders of the same rows with the encoded images inside. Generated once, reused."""
    import datasets

    from vit_fer.synthetic import synthesize_dataset

    root = data_dir / f"synthetic-{max(sizes)}-{IMAGE_SIZE}px"
    if not root.exists():
        synthesize_dataset(root, num_samples=max(sizes), image_size=IMAGE_SIZE, seed=0, progress=False)
    with open(root / "manifest.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    sources = {}
    for size in sizes:
        manifest = root / f"manifest-{size}.csv"
        if not manifest.exists():
            with open(manifest, "w", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=["rgb", "thermal", "label", "subject"], extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows[:size])
        arrow = data_dir / f"arrow-{size}"
        if not arrow.exists():
            features = datasets.Features(
                {"rgb": datasets.Image(), "thermal": datasets.Image(), "label": datasets.Value("string"),
                 "subject": datasets.Value("string")}  # fmt: skip
            )
            columns = {
                modality: [{"bytes": (root / row[modality]).read_bytes(), "path": None} for row in rows[:size]]
                for modality in ("rgb", "thermal")
            }
            columns.update({key: [row[key] for row in rows[:size]] for key in ("label", "subject")})
            datasets.Dataset.from_dict(columns, features=features).save_to_disk(str(arrow))
        sources[("manifest", size)], sources[("dataset", size)] = manifest, arrow
    return sources


def measure(source: str, kind: str, streaming: bool) -> dict:
    """One configuration, in this process (run it in a fresh one)."""
    import datasets
    import torch
    from torch.utils.data import DataLoader

    from vit_fer.data import load_fer_dataset
    from vit_fer.image_processing_vit_fer import ViTFERImageProcessor
    from vit_fer.transforms import FERDataCollator, with_fer_transforms

    torch.set_num_threads(1)
    torch.manual_seed(0)
    processor = ViTFERImageProcessor(size=IMAGE_SIZE)
    baseline, baseline_anonymous = _status_bytes("VmRSS"), _status_bytes("RssAnon")
    start = time.perf_counter()
    data = datasets.load_from_disk(source) if kind == "dataset" else source
    splits = load_fer_dataset(data, streaming=streaming)
    loaded = _status_bytes("VmRSS")
    train = with_fer_transforms(splits, processor)["train"]
    loader = DataLoader(train, batch_size=BATCH_SIZE, collate_fn=FERDataCollator(), shuffle=not streaming)
    samples, peak_anonymous = 0, _status_bytes("RssAnon")
    for batch in loader:
        samples += len(batch["labels"])
        peak_anonymous = max(peak_anonymous, _status_bytes("RssAnon"))
    return {
        "baseline_mib": baseline / MIB,
        "after_load_mib": loaded / MIB,
        "peak_mib": _status_bytes("VmHWM") / MIB,
        "data_mib": (_status_bytes("VmHWM") - baseline) / MIB,
        "baseline_anonymous_mib": baseline_anonymous / MIB,
        "peak_anonymous_mib": peak_anonymous / MIB,
        "train_samples": samples,
        "seconds_under_load": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, required=True, help="Where the synthetic data is (or goes).")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "streaming_memory.jsonl")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # the subprocess: a JSON configuration
    args = parser.parse_args()
    if args.measure:
        spec = json.loads(args.measure)
        print(json.dumps(measure(spec["source"], spec["kind"], spec["streaming"])))
        return

    sources = prepare(args.data_dir, sorted(args.sizes))
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    results = []
    with open(args.output, "w") as output:
        for size in sorted(args.sizes):
            for kind in args.sources:
                for streaming in (False, True):
                    spec = {"source": str(sources[(kind, size)]), "kind": kind, "streaming": streaming}
                    completed = subprocess.run(
                        [sys.executable, __file__, "--data_dir", str(args.data_dir), "--measure", json.dumps(spec)],
                        capture_output=True, text=True, env=environment, check=False,
                    )  # fmt: skip
                    if completed.returncode != 0:
                        raise RuntimeError(f"{spec} failed:\n{completed.stderr[-3000:]}")
                    result = {"pairs": size, **spec, **json.loads(completed.stdout.strip().splitlines()[-1])}
                    result["load_average"] = os.getloadavg()[0]
                    print(json.dumps(result), flush=True)
                    output.write(json.dumps(result) + "\n")
                    output.flush()
                    results.append(result)
    print_table(results)


def print_table(results: list[dict]) -> None:
    print("\n| pairs | source | loading | train samples iterated | peak RSS − baseline (MiB) | "
          "peak anonymous RSS − baseline (MiB) |")
    print("| ---: | --- | --- | ---: | ---: | ---: |")
    for r in results:
        mode = "streaming" if r["streaming"] else "map-style"
        print(f"| {r['pairs']:,} | {r['kind']} | {mode} | {r['train_samples']:,} | {r['data_mib']:.0f} | "
              f"{r['peak_anonymous_mib'] - r['baseline_anonymous_mib']:.0f} |")


if __name__ == "__main__":
    main()
