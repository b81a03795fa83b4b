"""Training speed of two commits, side by side: did a change make whole epochs faster, and did
it change the losses?

    python -m benchmarks.compare_commits OLD NEW [--config=dense_compress] [--pairs=6]
                                                 [--epochs=2]

OLD and NEW are anything `git worktree add` accepts (commit, branch, tag); each is checked out
into a temporary worktree. Pairs of fresh Python processes (OLD then NEW, then NEW then OLD in
the next pair, so drift hits both alike) train the config's default loop from that
checkout's own `autoenc` (`benchmarks/commit_child.py`): after an untimed epoch, 3
measurements of `--epochs` whole epochs each, timed as launch.py's `images_per_sec`.
Reported: each commit's median images/s, NEW/OLD per measurement (the n-th measurement of one
pair's two processes), and the largest relative difference of their mean losses over the same
epochs (0: the same arithmetic). Both commits need `train.build_model_and_optimizer`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import cpu as cpu_lib

REPO = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).with_name("commit_child.py")
MEASUREMENTS = 3


def measure(tree: Path, config_name: str, epochs: int) -> list[dict]:
    """One child process's measurements, from the checkout in `tree`."""
    result = subprocess.run(
        [sys.executable, str(CHILD), config_name, str(MEASUREMENTS), str(epochs)],
        capture_output=True,
        text=True,
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},  # the checkout's autoenc, not this one's
    )
    measurements = [json.loads(line) for line in result.stdout.splitlines() if line[:1] == "{"]
    if result.returncode != 0 or len(measurements) != MEASUREMENTS:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise SystemExit(f"compare_commits: the run in {tree} failed:\n{tail}")
    return measurements


def add_worktrees(scratch: Path, commits: dict[str, str], trees: dict[str, Path]) -> None:
    for label, commit in commits.items():
        tree = scratch / label
        added = subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree), commit]
        )
        if added.returncode != 0:  # git has said why
            raise SystemExit(f"compare_commits: cannot check out {commit!r}")
        trees[label] = tree


def run_pairs(args) -> dict[str, list[list[dict]]]:
    """`args.pairs` process pairs over temporary worktrees of both commits."""
    runs = {"old": [], "new": []}
    with tempfile.TemporaryDirectory(prefix="compare_commits.") as scratch:
        trees = {}
        try:
            add_worktrees(Path(scratch), {"old": args.old, "new": args.new}, trees)
            for pair in range(args.pairs):
                for label in ("old", "new") if pair % 2 == 0 else ("new", "old"):
                    runs[label].append(measure(trees[label], args.config, args.epochs))
                    rates = " ".join(f"{m['images_per_sec']:,.0f}" for m in runs[label][-1])
                    print(f"pair {pair + 1}/{args.pairs} {label}: {rates}", file=sys.stderr)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)])
    return runs


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare_commits", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--config", default="dense_compress")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=2, help="whole epochs per measurement")
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.epochs < 1:
        parser.error("--pairs and --epochs must be at least 1")
    runs = run_pairs(args)

    def rates(label):
        return [m["images_per_sec"] for run in runs[label] for m in run]

    ratios = [new / old for new, old in zip(rates("new"), rates("old"))]
    loss_diff = max(
        abs(new["mean_loss"] / old["mean_loss"] - 1)
        for new_run, old_run in zip(runs["new"], runs["old"])
        for new, old in zip(new_run, old_run)
    )
    onednn = runs["new"][0][0].get("onednn")
    print(f"CPU: {cpu_lib.this_cpu(onednn=onednn).describe()}")
    print(f"{args.config}: {args.pairs} process pairs x {MEASUREMENTS} measurements of"
          f" {args.epochs} whole epoch(s)")  # fmt: skip
    print(f"  old {args.old}: {statistics.median(rates('old')):,.0f} images/s (median)")
    print(f"  new {args.new}: {statistics.median(rates('new')):,.0f} images/s (median)")
    print(f"  new / old: {statistics.median(ratios):.3f}x median, measurements "
          + " ".join(f"{r:.2f}" for r in ratios))  # fmt: skip
    print(f"  largest relative difference of a measurement's mean loss: {loss_diff:.1e}")


if __name__ == "__main__":
    main()
