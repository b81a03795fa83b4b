"""Compression study: the book's dense autoencoder vs PCA at code widths 8..768.

    python studies/compression.py [--root=runs/studies/compression] [--out=docs]
                                  [--dims=8,16,32,64,128,256,768]

Trains one `dense_compress` run per width (about 2 min each on 2 CPU cores, 10 min for 768),
fits PCA once, prints and writes `OUT/compression_study.md` and `OUT/compression_study.png`.
A rerun computes only the points missing from `ROOT/points.json` (see
`autoenc.compression_study`).
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
from autoenc.studies import compression as compression_study  # noqa: E402
from autoenc.studies import figures as study_plots  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="runs/studies/compression", help="workdirs and cache")
    parser.add_argument("--out", default="docs", help="where the table and the PNG go")
    parser.add_argument("--dims", default=",".join(map(str, compression_study.DIMS)))
    args = parser.parse_args()
    logging.set_verbosity(logging.INFO)

    started = time.perf_counter()
    rows = compression_study.run(
        args.root,
        [int(dim) for dim in args.dims.split(",")],
        log=lambda line: print(line, flush=True),
    )
    table = compression_study.markdown_table(rows)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compression_study.md").write_text(table)
    plots.save_png(study_plots.compression_figure(rows), out / "compression_study.png")
    print(table)
    point_seconds = sum(row[key]["seconds"] for row in rows for key in ("autoencoder", "pca"))
    print(
        f"points took {point_seconds / 60:.1f} min when computed; this run"
        f" {(time.perf_counter() - started) / 60:.1f} min; wrote {out / 'compression_study.md'}"
        f" and {out / 'compression_study.png'}"
    )


if __name__ == "__main__":
    main()
