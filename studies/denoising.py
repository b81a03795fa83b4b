"""Denoising study: the book's conv denoiser vs classical denoisers at noise factors 0.1..0.8.

    python studies/denoising.py [--root=runs/studies/denoising] [--out=docs] [--epochs=10]
                                [--levels=0.1,0.2,...,0.8] [--test_images=0] [--tuning_images=200]

Trains `conv_denoise` (noise 0.5) for --epochs if its workdir is not yet trained (about 85 s per
epoch on 2 CPU cores), scores it and the tuned classical denoisers at every level, prints and
writes `OUT/denoising_study.md` and `OUT/denoising_study.png`. A rerun computes only the points
missing from `ROOT/points.json` (see `autoenc.denoising_study`).
"""

import argparse
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import logging  # noqa: E402

from autoenc import plots  # noqa: E402
from autoenc.studies import baselines  # noqa: E402
from autoenc.studies import denoising as denoising_study  # noqa: E402
from autoenc.studies import figures as study_plots  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="runs/studies/denoising", help="workdir and cache")
    parser.add_argument("--out", default="docs", help="where the tables and the PNG go")
    parser.add_argument("--epochs", type=int, default=10, help="the denoiser's training epochs")
    parser.add_argument("--levels", default=",".join(map(str, denoising_study.LEVELS)))
    parser.add_argument("--methods", default=",".join(denoising_study.METHODS))
    parser.add_argument("--test_images", type=int, default=0, help="first N test images; 0 = all")
    parser.add_argument("--tuning_images", type=int, default=200, help="held-out training images")
    args = parser.parse_args()
    logging.set_verbosity(logging.INFO)

    started = time.perf_counter()
    methods = args.methods.split(",")
    result = denoising_study.run(
        args.root,
        [float(level) for level in args.levels.split(",")],
        epochs=args.epochs,
        methods=methods,
        test_images=args.test_images,
        tuning_images=args.tuning_images,
        log=lambda line: print(line, flush=True),
    )
    text = denoising_study.markdown_tables(result, methods)
    timings = denoising_study.timing_lines(result, methods)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "denoising_study.md").write_text(
        f"{text}\nTime per method (when computed):\n\n{timings}"
    )
    levels = [row["level"] for row in result["rows"]]
    curves = {"noisy input": [row["noisy input"] for row in result["rows"]]}
    curves["conv autoencoder (trained at 0.5)"] = [row["autoencoder"] for row in result["rows"]]
    for name in methods:
        curves[baselines.DENOISERS[name].label] = [row[name] for row in result["rows"]]
    plots.save_png(study_plots.denoising_figure(levels, curves), out / "denoising_study.png")
    print(text)
    print(timings)
    print(
        f"{result['test_images']} test images; this run took"
        f" {(time.perf_counter() - started) / 60:.1f} min; wrote {out / 'denoising_study.md'}"
        f" and {out / 'denoising_study.png'}"
    )


if __name__ == "__main__":
    main()
