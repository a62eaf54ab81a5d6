#!/usr/bin/env python
"""The fusion results matrix: every design of train.py — RGB only, thermal only, early concat / add, mid fusion
(bottleneck / cross-attention / concat / add at the middle layer), late feature concat / add / attention, late
prediction — trained with the demo's budget (train.py's DEMO_ARGUMENTS) and the same seeds on the synthetic
RGB-thermal benchmark, reported as mean ± std over the seeds of test accuracy, macro-F1 and UAR; and a sweep of one
mid-fusion type over every `fusion_layer`, from 0 (early) to the model's depth (late).

    python benchmarks/fusion_matrix.py                     # 12 designs × 3 seeds, 2 runs at a time
    python benchmarks/fusion_matrix.py --seeds 0 --jobs 1 --update_readme
    python benchmarks/fusion_matrix.py --designs "mid fusion at layer 1, add" --sweep add --update_readme

Each run is a train.py subprocess (one CPU thread each, `--jobs` at a time); every run's folder stays under
`--output_dir` with its model, card and plots, and a finished run is not run again. `--update_readme` writes the
table between the `<!-- fusion-matrix -->` markers of README.md (rows of designs not run this time are kept), the
sweep between the `<!-- fusion-layer-sweep -->` markers, and the sweep's plot (test accuracy against
`fusion_layer`, with the relative compute on a second axis) to benchmarks/results/fusion_layer_sweep.png.
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
MID_FUSION_TYPES = ("bottleneck", "cross_attention", "concat", "add")


def mid_design(fusion_type: str, fusion_layer: int) -> str:
    return f"mid fusion at layer {fusion_layer}, {fusion_type}"


def _demo_layers() -> int:
    from train import DEMO_ARGUMENTS

    return DEMO_ARGUMENTS["num_hidden_layers"]


# Each mid-fusion type at the middle layer of the demo-size model (layer 1 of its 3: one layer per modality, two
# fused).
for _fusion_type in MID_FUSION_TYPES:
    DESIGNS[mid_design(_fusion_type, _demo_layers() // 2)] = {
        "mode": "combined", "fusion_strategy": "mid", "fusion_type": _fusion_type, "fusion_layer": _demo_layers() // 2,
    }  # fmt: skip
# LoRA (`--strategy lora`, rank 8, adapters on every encoder's query / value projections) against full fine-tuning,
# one design per architecture family, with the same budget. The demo trains from scratch: LoRA adapts a random encoder.
LORA_RANK = 8
_MIDDLE = _demo_layers() // 2
for _design in ("RGB only", "early fusion, concat", "late fusion, feature add", mid_design("add", _MIDDLE)):
    DESIGNS[f"{_design}, LoRA r={LORA_RANK}"] = {**DESIGNS[_design], "strategy": "lora", "lora_r": LORA_RANK}
DESIGN_KEYS = ("mode", "fusion_strategy", "fusion_type", "fusion_layer")
METRICS = ("test_accuracy", "test_macro_f1", "test_uar")
MARKERS = ("<!-- fusion-matrix:start -->", "<!-- fusion-matrix:end -->")
SWEEP_MARKERS = ("<!-- fusion-layer-sweep:start -->", "<!-- fusion-layer-sweep:end -->")
SWEEP_PLOT = ROOT / "benchmarks" / "results" / "fusion_layer_sweep.png"


def run_folder(design: str, seed: int, output_dir: Path) -> Path:
    return output_dir / f"{design.replace(' ', '_').replace(',', '').replace('(', '').replace(')', '')}-seed{seed}"


def run(design: str, seed: int, data_dir: Path, output_dir: Path) -> dict:
    """One train.py run of `design` with the demo's budget (model size, epochs, learning rate) and `seed`."""
    from train import DEMO_ARGUMENTS

    run_dir = run_folder(design, seed, output_dir)
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
        lines.append(f"| {design}{_partial(runs, seeds)} | " + " | ".join(_summaries(runs)) + " |")
    return "\n".join(lines)


def _summaries(runs: list[dict]) -> list[str]:
    """Mean ± std over the runs of each metric (± – for a single run)."""
    cells = []
    for metric in METRICS:
        values = [result[metric] for result in runs]
        spread = f"{statistics.stdev(values):.3f}" if len(values) > 1 else "–"
        cells.append(f"{statistics.mean(values):.3f} ± {spread}")
    return cells


def _partial(runs: list[dict], seeds: list[int]) -> str:
    """A note naming the seeds a design has results for, when not all of them."""
    if len(runs) == len(seeds):
        return ""
    done = [str(result["seed"]) for result in runs]
    return f" (seed{'s' if len(done) > 1 else ''} {', '.join(done)} only)"


def _cells(line: str) -> list[str]:
    """The cells of a table row, the design's without its note on seeds."""
    cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
    return [cells[0].split(" (seed")[0], *cells[1:]]


def merge_rows(previous: str, markdown: str) -> str:
    """`markdown` with the table rows of `previous` whose design it does not have, kept in their place before it."""
    new_rows = {_cells(line)[0] for line in markdown.splitlines() if line.startswith("| ") and "---" not in line}
    kept = [
        line
        for line in previous.splitlines()[4:]
        if line.startswith("| ") and _cells(line)[0] not in new_rows and _cells(line)[0] != "design"
    ]
    lines = markdown.splitlines()
    return "\n".join(lines[:4] + kept + lines[4:])


def update_readme(markdown: str, markers: tuple[str, str] = MARKERS, keep_rows: bool = True) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = (text.index(marker) for marker in markers)
    if keep_rows:
        markdown = merge_rows(text[start + len(markers[0]) : end].strip(), markdown)
    readme.write_text(text[: start + len(markers[0])] + "\n" + markdown + "\n" + text[end:])


def relative_compute(fusion_type: str, fusion_layer: int) -> float:
    """Forward FLOPs of the demo-size mid-fusion model over one demo-size encoder's (benchmarks/flops.py)."""
    from flops import encoder_forward_flops, mid_fusion_forward_flops
    from train import DEMO_ARGUMENTS
    from vit_fer import MidFusionViTConfig

    sizes = ("image_size", "patch_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    config = MidFusionViTConfig(
        **{key: DEMO_ARGUMENTS[key] for key in sizes}, fusion_type=fusion_type, fusion_layer=fusion_layer
    )
    return mid_fusion_forward_flops(config) / encoder_forward_flops(config)


def sweep_table(results: dict[str, list[dict]], fusion_type: str, seeds: list[int]) -> str:
    lines = [
        f"Mid fusion `{fusion_type}` at every `fusion_layer` of the demo-size model ({_demo_layers()} layers; 0 = "
        f"early, {_demo_layers()} = late fusion), same budget; test split, mean ± std over seeds "
        f"{', '.join(map(str, seeds))}. Compute: forward FLOPs relative to one encoder.",
        "",
        "| fusion_layer | accuracy | macro-F1 | UAR | relative compute |",
        "| --- | --- | --- | --- | --- |",
    ]
    for layer in range(_demo_layers() + 1):
        runs = results[mid_design(fusion_type, layer)]
        cells = _summaries(runs) if runs else ["not run"] * len(METRICS)
        lines.append(
            f"| {layer}{_partial(runs, seeds) if runs else ''} | " + " | ".join(cells)
            + f" | {relative_compute(fusion_type, layer):.2f}× |"
        )  # fmt: skip
    return "\n".join(lines)


def plot_sweep(results: dict[str, list[dict]], fusion_type: str, seeds: list[int], path: Path) -> None:
    """Test accuracy (mean ± std over the seeds) against `fusion_layer`, the relative compute on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    all_layers = list(range(_demo_layers() + 1))
    layers = [k for k in all_layers if results[mid_design(fusion_type, k)]]  # a layer not run yet is left out
    accuracies = [[result["test_accuracy"] for result in results[mid_design(fusion_type, k)]] for k in layers]
    means = [statistics.mean(values) for values in accuracies]
    spreads = [statistics.stdev(values) if len(values) > 1 else 0.0 for values in accuracies]
    figure, axis = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    axis.errorbar(layers, means, yerr=spreads, marker="o", capsize=4, color="tab:blue", label="test accuracy")
    for layer, values in zip(layers, accuracies):
        axis.annotate(f"n={len(values)}", (layer, statistics.mean(values)), textcoords="offset points", xytext=(6, -12),
                      fontsize=7, color="tab:blue")  # fmt: skip
    axis.set_xlabel(f"fusion_layer (0 = early fusion, {all_layers[-1]} = late fusion)")
    axis.set_ylabel("test accuracy (mean ± std over n seeds)", color="tab:blue")
    axis.set_xticks(all_layers)
    axis.set_ylim(0, 1)
    compute_axis = axis.twinx()
    compute_axis.plot(all_layers, [relative_compute(fusion_type, k) for k in all_layers], marker="s", linestyle="--",
                      color="tab:orange", label="relative compute")  # fmt: skip
    compute_axis.set_ylabel("forward FLOPs / one encoder's", color="tab:orange")
    compute_axis.set_ylim(0, 2.6)
    axis.set_title(f"Mid fusion '{fusion_type}': where RGB and thermal meet (demo-size ViT, synthetic benchmark)",
                   fontsize=9)  # fmt: skip
    handles = axis.get_legend_handles_labels()[0] + compute_axis.get_legend_handles_labels()[0]
    axis.legend(handles, ["test accuracy", "relative compute"], loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=list(DESIGNS))
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one CPU thread each)")
    parser.add_argument("--num_samples", type=int, default=2000, help="pairs in the synthetic benchmark")
    parser.add_argument("--output_dir", type=Path, default=ROOT / "outputs" / "fusion-matrix")
    parser.add_argument("--sweep", choices=MID_FUSION_TYPES,
                        help="also train this mid-fusion type at every fusion_layer, 0 to the depth, and plot it")
    parser.add_argument("--update_readme", action="store_true", help="write the tables and the plot into README.md")
    parser.add_argument("--finished_only", action="store_true",
                        help="train nothing: report the runs that have finished, naming the seeds of each design")
    args = parser.parse_args()
    sweep = [mid_design(args.sweep, layer) for layer in range(_demo_layers() + 1)] if args.sweep else []
    for layer, design in enumerate(sweep):
        DESIGNS[design] = {"mode": "combined", "fusion_strategy": "mid", "fusion_type": args.sweep, "fusion_layer": layer}
    designs = list(dict.fromkeys(args.designs + sweep))

    from train import DEMO_ARGUMENTS
    from vit_fer import synthesize_dataset

    data_dir = args.output_dir / f"data-{args.num_samples}"
    if not data_dir.exists():
        synthesize_dataset(data_dir, num_samples=args.num_samples, seed=0, image_size=DEMO_ARGUMENTS["image_size"])
    # Seed by seed, so that every design has a first result early.
    jobs = [(design, seed) for seed in args.seeds for design in designs]
    if args.finished_only:
        jobs = [job for job in jobs if (run_folder(*job, args.output_dir) / "all_results.json").exists()]
    with ThreadPoolExecutor(args.jobs) as pool:
        outcomes = list(pool.map(lambda job: run(*job, data_dir, args.output_dir), jobs))
    results: dict[str, list[dict]] = {design: [] for design in designs}
    for (design, seed), outcome in zip(jobs, outcomes):
        results[design].append({**outcome, "seed": seed})
    results = {design: runs for design, runs in results.items() if runs or design in sweep}

    markdown = table({d: results[d] for d in args.designs if d in results}, args.seeds, args.num_samples)
    (args.output_dir / "fusion_matrix.md").write_text(markdown + "\n")
    print("\n" + markdown)
    if args.update_readme:
        update_readme(markdown)
    if args.sweep:
        sweep_markdown = sweep_table(results, args.sweep, args.seeds)
        (args.output_dir / "fusion_layer_sweep.md").write_text(sweep_markdown + "\n")
        plot_sweep(results, args.sweep, args.seeds, args.output_dir / SWEEP_PLOT.name)
        print("\n" + sweep_markdown)
        if args.update_readme:
            update_readme(sweep_markdown, SWEEP_MARKERS, keep_rows=False)
            plot_sweep(results, args.sweep, args.seeds, SWEEP_PLOT)


if __name__ == "__main__":
    main()
