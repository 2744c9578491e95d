"""Draw the GAN class-inference attack's images next to real ones: docs/img/class_inference.png.

Reads the ``class_inference/round<r>.npz`` files of the directory of
``fedsim sweep scenarios/class_inference.yaml`` (the passive and active points of one seed)
and puts, per probed round, the first fakes of each mode under real held-out images of the
target class (which the attacker never had), with the round's confidence and fidelity from
``metrics.jsonl``.

    fedsim sweep scenarios/class_inference.yaml --out runs/class_inference
    python benchmarks/class_inference_figure.py runs/class_inference --seed 0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fedsim.data.datasets import load_dataset  # noqa: E402

SHOWN = 6


def _figures(run: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["round"]: r for r in rows if "class_inference_confidence" in r}


def main() -> None:
    """Parse the arguments and write the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/img/class_inference.png"))
    args = parser.parse_args()
    runs = {
        mode: args.sweep_dir / f"seed={args.seed},privacy.class_inference.mode={mode}"
        for mode in ("passive", "active")
    }
    rounds = sorted(_figures(runs["passive"]))
    target = int(np.load(runs["passive"] / "class_inference" / f"round{rounds[-1]}.npz")["target"])
    data = load_dataset("digits", seed=args.seed, test_fraction=0.2)
    real = data.x_test[data.y_test == target][:SHOWN].numpy()
    rows = [("real (held out)", real)]
    for mode, run in runs.items():
        figures = _figures(run)
        for r in rounds:
            images = np.load(run / "class_inference" / f"round{r}.npz")["images"][:SHOWN]
            f = figures[r]
            label = (
                f"{mode} r{r}\nconf {f['class_inference_confidence']:.2f}"
                f" fid {f['class_inference_fidelity']:.2f}"
            )
            rows.append((label, images))
    fig, axes = plt.subplots(len(rows), SHOWN, figsize=(SHOWN * 0.9, len(rows) * 0.95))
    for (label, images), line in zip(rows, axes, strict=True):
        for k, ax in enumerate(line):
            ax.imshow(images[k, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        line[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(f"GAN class inference of digit {target} (seed {args.seed})", fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
