"""Training speed of two commits of this repository, side by side: did a change make the loop
faster, and did it change the losses?

Command (from the repository root; about 5 minutes with the default 6 pairs):

    python benchmarks/compare_commits.py OLD NEW [--config=dense_compress] [--pairs=6]

OLD and NEW are anything `git worktree add` accepts (commit, branch, tag). Each is checked out
into a temporary worktree. A pair of fresh Python processes (OLD then NEW, then NEW then OLD
in the next pair, so drift hits both alike) then trains the config's default loop from that
checkout's own `autoenc`: the strategy, the model and optimizer from
`train.build_model_and_optimizer`, `steps.make_train_steps` and `pipeline.train_dataset` over
the real training images (as blocks of a call's batches where the steps take blocks). Each
process times 3 measurements of 10 `steps_per_loop`-step calls, each after an untimed call
(tracing and compilation happen in the very first), and prints their images/s and mean losses.
Reported: each commit's median images/s, NEW/OLD per measurement (the n-th measurement of one
pair's two processes), and the largest relative difference between the two commits' mean
losses over the same steps (0 means the same arithmetic; for the dense model one float32 ulp
of the weights moves them by about 1e-7).

It needs both commits to have `train.build_model_and_optimizer` (the commits of 2026-11-26 and
later). Like the other benchmarks it runs with launch.py's process settings and wants a quiet
machine.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHILD_FLAG = "--child"
MEASUREMENTS = 3
CALLS_PER_MEASUREMENT = 10


def child(repo: str, config_name: str) -> None:
    """Trains `config_name`'s default loop from the `autoenc` in `repo`; prints JSON lines."""
    sys.path.insert(0, repo)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from autoenc.command_line import configure_process

    configure_process()
    import keras
    import tensorflow as tf

    from autoenc import config as config_lib
    from autoenc import data as data_lib
    from autoenc import distribute, models, pipeline, steps, train

    config = config_lib.load_config(config_name)
    train.set_op_determinism(config.deterministic)
    strategy = distribute.make_strategy()
    keras.utils.set_random_seed(config.seed)
    nets, optimizer = train.build_model_and_optimizer(config, strategy)
    train_steps = steps.make_train_steps(
        strategy, nets.autoencoder, optimizer, config.batch_size, jit_compile=config.xla
    )
    images = tf.constant(data_lib.load_fashion_mnist(None).x_train)
    per_call = tf.constant(config.steps_per_loop)
    # Steps that take a block of batches per call (commits since steps.trains_on_blocks) get
    # each epoch's whole calls as blocks, epoch after epoch; older steps take the same batches
    # one by one (the epoch's few batches after its last whole call are left out in both).
    takes_blocks = getattr(steps, "trains_on_blocks", lambda *args, **kwargs: False)
    blocks = takes_blocks(strategy, nets.autoencoder, jit_compile=config.xla)
    calls_per_epoch = len(images) // config.batch_size // config.steps_per_loop
    if not calls_per_epoch:
        raise SystemExit(f"compare_commits.py: {config_name}'s steps_per_loop exceeds an epoch")

    def epoch_batches(epoch):
        block_sizes = {"block_sizes": [config.steps_per_loop] * calls_per_epoch}
        dataset = pipeline.train_dataset(
            images,
            batch_size=config.batch_size,
            epoch=epoch,
            seed=config.seed,
            noise_factor=config.noise_factor,
            input_shape=models.input_shape(config),
            **(block_sizes if blocks else {}),
        )
        return dataset if blocks else dataset.take(calls_per_epoch * config.steps_per_loop)

    def batches(first_epoch):  # enough epochs for a measurement's calls
        epochs = -(-(1 + CALLS_PER_MEASUREMENT) // calls_per_epoch)
        dataset = epoch_batches(first_epoch * epochs)
        for epoch in range(first_epoch * epochs + 1, (first_epoch + 1) * epochs):
            dataset = dataset.concatenate(epoch_batches(epoch))
        return iter(distribute.distribute_dataset(strategy, dataset))

    train_steps(batches(0), per_call).numpy()  # tracing and compilation
    for measurement in range(MEASUREMENTS):
        iterator = batches(measurement + 1)
        train_steps(iterator, per_call).numpy()  # fills the prefetch buffer
        started = time.perf_counter()
        losses = [train_steps(iterator, per_call).numpy() for _ in range(CALLS_PER_MEASUREMENT)]
        seconds = time.perf_counter() - started
        steps_done = CALLS_PER_MEASUREMENT * config.steps_per_loop
        mean_loss = float(sum(float(l.sum()) for l in losses) / steps_done)
        rate = steps_done * config.batch_size / seconds
        print(json.dumps(dict(images_per_sec=rate, mean_loss=mean_loss)), flush=True)


def measure(repo: Path, config_name: str) -> list[dict]:
    """One child process's measurements."""
    result = subprocess.run(
        [sys.executable, __file__, CHILD_FLAG, str(repo), f"--config={config_name}"],
        capture_output=True,
        text=True,
    )
    measurements = [json.loads(line) for line in result.stdout.splitlines() if line[:1] == "{"]
    if result.returncode != 0 or len(measurements) != MEASUREMENTS:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise SystemExit(f"compare_commits.py: the run in {repo} failed:\n{tail}")
    return measurements


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("old", nargs="?")
    parser.add_argument("new", nargs="?")
    parser.add_argument("--config", default="dense_compress")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument(CHILD_FLAG, metavar="REPO", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.config)
        return
    if not (args.old and args.new):
        parser.error("give two commits: OLD NEW")
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")

    with tempfile.TemporaryDirectory(prefix="compare_commits.") as scratch:
        trees = {}
        try:
            for label, commit in (("old", args.old), ("new", args.new)):
                tree = Path(scratch) / label
                added = subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree),
                     commit],
                    check=False,
                )  # fmt: skip
                if added.returncode != 0:  # git has said why
                    raise SystemExit(f"compare_commits.py: cannot check out {commit!r}")
                trees[label] = tree
            runs = {"old": [], "new": []}
            for pair in range(args.pairs):
                order = ("old", "new") if pair % 2 == 0 else ("new", "old")
                for label in order:
                    runs[label].append(measure(trees[label], args.config))
                    rates = " ".join(f"{m['images_per_sec']:,.0f}" for m in runs[label][-1])
                    print(f"pair {pair + 1}/{args.pairs} {label}: {rates}", file=sys.stderr)
        finally:
            for tree in trees.values():
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                    check=False,
                )

    def rates(label):
        return [m["images_per_sec"] for run in runs[label] for m in run]

    ratios = [new / old for new, old in zip(rates("new"), rates("old"))]
    loss_diff = max(
        abs(new["mean_loss"] - old["mean_loss"]) / abs(old["mean_loss"])
        for new_run, old_run in zip(runs["new"], runs["old"])
        for new, old in zip(new_run, old_run)
    )
    print(f"{args.config}: {args.pairs} process pairs x {MEASUREMENTS} measurements")
    print(f"  old {args.old}: {statistics.median(rates('old')):,.0f} images/s (median)")
    print(f"  new {args.new}: {statistics.median(rates('new')):,.0f} images/s (median)")
    print(f"  new / old: {statistics.median(ratios):.3f}x median, measurements "
          + " ".join(f"{r:.2f}" for r in ratios))  # fmt: skip
    print(f"  largest relative difference of a measurement's mean loss: {loss_diff:.1e}")


if __name__ == "__main__":
    main()
