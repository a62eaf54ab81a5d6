#!/usr/bin/env python
"""The fusion results matrix: every design of train.py — RGB only, thermal only, early concat / add, late feature
concat / add / attention, late prediction — trained with the demo's budget (train.py's DEMO_ARGUMENTS) and the same
seeds on the synthetic RGB-thermal benchmark, reported as mean ± std over the seeds of test accuracy, macro-F1 and
UAR.

    python benchmarks/fusion_matrix.py                     # 8 designs × 3 seeds, 2 runs at a time
    python benchmarks/fusion_matrix.py --seeds 0 --jobs 1 --update_readme

Each run is a train.py subprocess (one CPU thread each, `--jobs` at a time); every run's folder stays under
`--output_dir` with its model, card and plots. `--update_readme` writes the table between the
`<!-- fusion-matrix -->` markers of README.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DESIGNS = {
    "RGB only": {"mode": "rgb"},
    "thermal only": {"mode": "thermal"},
    "early fusion, concat": {"mode": "combined", "fusion_strategy": "early", "fusion_type": "concat"},
    "early fusion, add": {"mode": "combined", "fusion_strategy": "early", "fusion_type": "add"},
    "late fusion, feature concat": {"mode": "combined", "fusion_strategy": "late", "fusion_type": "concat"},
    "late fusion, feature add": {"mode": "combined", "fusion_strategy": "late", "fusion_type": "add"},
    "late fusion, feature attention": {"mode": "combined", "fusion_strategy": "late", "fusion_type": "attention"},
    "late fusion, prediction (mean)": {"mode": "combined", "fusion_strategy": "late", "fusion_layer": "prediction"},
}
DESIGN_KEYS = ("mode", "fusion_strategy", "fusion_type", "fusion_layer")
METRICS = ("test_accuracy", "test_macro_f1", "test_uar")
MARKERS = ("<!-- fusion-matrix:start -->", "<!-- fusion-matrix:end -->")


def run(design: str, seed: int, data_dir: Path, output_dir: Path) -> dict:
    """One train.py run of `design` with the demo's budget (model size, epochs, learning rate) and `seed`."""
    from train import DEMO_ARGUMENTS

    run_dir = output_dir / f"{design.replace(' ', '_').replace(',', '').replace('(', '').replace(')', '')}-seed{seed}"
    results = run_dir / "all_results.json"
    if not results.exists():
        budget = {key: value for key, value in DEMO_ARGUMENTS.items() if key not in DESIGN_KEYS}
        arguments = {**budget, **DESIGNS[design], "seed": seed, "dataset_dir": data_dir, "output_dir": run_dir,
                     "disable_tqdm": True}  # fmt: skip
        command = [sys.executable, str(ROOT / "train.py")]
        for key, value in arguments.items():
            command += [f"--{key}", str(value)]
        started = time.monotonic()
        completed = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if completed.returncode != 0:
            raise RuntimeError(f"{design}, seed {seed} failed:\n{completed.stderr[-3000:]}")
        print(f"{design:<32} seed {seed}: {time.monotonic() - started:6.0f} s", flush=True)
    return json.loads(results.read_text())


def table(results: dict[str, list[dict]], seeds: list[int], num_samples: int) -> str:
    lines = [
        f"Synthetic RGB-thermal benchmark ({num_samples} pairs, subject-wise split), same budget for every design; "
        f"test split, mean ± std over seeds {', '.join(map(str, seeds))}.",
        "",
        "| design | accuracy | macro-F1 | UAR |",
        "| --- | --- | --- | --- |",
    ]
    for design, runs in results.items():
        cells = []
        for metric in METRICS:
            values = [result[metric] for result in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f}")
        lines.append(f"| {design} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def update_readme(markdown: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = (text.index(marker) for marker in MARKERS)
    readme.write_text(text[: start + len(MARKERS[0])] + "\n" + markdown + "\n" + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=list(DESIGNS))
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one CPU thread each)")
    parser.add_argument("--num_samples", type=int, default=2000, help="pairs in the synthetic benchmark")
    parser.add_argument("--output_dir", type=Path, default=ROOT / "outputs" / "fusion-matrix")
    parser.add_argument("--update_readme", action="store_true", help="write the table into README.md")
    args = parser.parse_args()

    from train import DEMO_ARGUMENTS
    from vit_fer import synthesize_dataset

    data_dir = args.output_dir / f"data-{args.num_samples}"
    if not data_dir.exists():
        synthesize_dataset(data_dir, num_samples=args.num_samples, seed=0, image_size=DEMO_ARGUMENTS["image_size"])
    jobs = [(design, seed) for design in args.designs for seed in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        outcomes = list(pool.map(lambda job: run(*job, data_dir, args.output_dir), jobs))
    results: dict[str, list[dict]] = {design: [] for design in args.designs}
    for (design, _), outcome in zip(jobs, outcomes):
        results[design].append(outcome)

    markdown = table(results, args.seeds, args.num_samples)
    (args.output_dir / "fusion_matrix.md").write_text(markdown + "\n")
    print("\n" + markdown)
    if args.update_readme:
        update_readme(markdown)


if __name__ == "__main__":
    main()
