"""Two worker processes on 127.0.0.1, started as docs/distributed.md says, train one run together.

One scenario, three launches (each process start pays for the TensorFlow import):
1. both workers start a long run; worker 1 alone gets SIGTERM; both must stop after the same
   step, save, and exit 75;
2. the same command with fewer epochs resumes both from the chief's checkpoint and finishes:
   identical weights on both workers, every output in the workdir written by the chief only,
   nothing left in worker 1's temporary directory;
3. a single-process run of the same config gives the same history and test metrics (the same
   global batch on 1 or 2 replicas trains the same model, within float summation order).
"""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from autoenc import data

REPO = pathlib.Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(
    not (pathlib.Path(data.DEBIAN_DIR) / "train-images-idx3-ubyte.gz").exists(),
    reason="needs the real Fashion-MNIST (apt-get install dataset-fashion-mnist)",
)
RUN = [
    "--config=dense_compress",
    "--config.train_examples=512",
    "--config.batch_size=64",
    "--config.early_stopping.enabled=false",
    "--config.steps_per_loop=2",
]
TIMEOUT = 300


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start(args: list[str], log: pathlib.Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "launch.py", *args],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),  # noqa: SIM115 (closed with the process)
    )


def start_workers(tmp_path, name, workdir, extra, worker_tmp):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    for index in range(2):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = {"TF_CONFIG": json.dumps(tf_config)}
        if index == 1:
            env["TMPDIR"] = str(worker_tmp)
        log = tmp_path / f"{name}-worker{index}.log"
        args = [*RUN, "--strategy=multi_worker", f"--workdir={workdir}", *extra]
        workers.append((start(args, log, env), log))
    return workers


def finish(workers) -> list[tuple[int, str]]:
    results = []
    for process, log in workers:
        try:
            process.wait(timeout=TIMEOUT)
        finally:
            if process.poll() is None:
                for p, _ in workers:
                    p.kill()
        results.append((process.returncode, log.read_text()))
    return results


def wait_for_line(log: pathlib.Path, pattern: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not re.search(pattern, log.read_text()):
        assert process.poll() is None, f"worker ended before {pattern!r}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {pattern!r} in {TIMEOUT} s"
        time.sleep(0.2)  # polling a log file for a condition, not synchronising by time


def fingerprint(log: str) -> str:
    return re.search(r"weights fingerprint (\w+)", log).group(1)


def test_two_workers_preempt_resume_and_match_one_process(tmp_path):
    workdir = tmp_path / "run"
    worker_tmp = tmp_path / "worker1-tmp"
    worker_tmp.mkdir()

    # 1. A long run; SIGTERM reaches worker 1 only, once two epochs are done.
    workers = start_workers(tmp_path, "first", workdir, ["--config.epochs=50"], worker_tmp)
    chief_pids, other_pids = {workers[0][0].pid}, {workers[1][0].pid}
    wait_for_line(workers[0][1], r"epoch 2/50", workers[0][0])
    workers[1][0].send_signal(signal.SIGTERM)
    results = finish(workers)
    for code, log in results:
        assert code == 75, log
    assert "a signal to another worker" in results[0][1]
    assert "stopped by SIGTERM" in results[1][1]

    # 2. The same command with epochs=3 resumes both workers from the chief's checkpoint.
    workers = start_workers(tmp_path, "resumed", workdir, ["--config.epochs=3"], worker_tmp)
    chief_pids.add(workers[0][0].pid)
    other_pids.add(workers[1][0].pid)
    (code0, log0), (code1, log1) = finish(workers)
    assert code0 == 0, log0
    assert code1 == 0, log1
    assert "Resuming from" in log0 and "Resuming from" in log1
    assert fingerprint(log0) == fingerprint(log1)
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["epochs_completed"] == 3
    for path in ("history.csv", "config.json", "best", "checkpoints", "figures"):
        assert (workdir / path).exists(), path
    # Event file names end in ".<host>.<pid>.<n>.v2": every one is a chief's.
    event_pids = {int(path.name.split(".")[-3]) for path in workdir.rglob("events.out.tfevents.*")}
    assert event_pids and event_pids <= chief_pids and not event_pids & other_pids
    assert list(worker_tmp.iterdir()) == []  # worker 1 saved to a temp dir and removed it

    # 3. One process, one replica, the same global batch: the same training.
    single = tmp_path / "single"
    process = start([*RUN, "--config.epochs=3", f"--workdir={single}"], tmp_path / "single.log", {})
    [(code, log)] = finish([(process, tmp_path / "single.log")])
    assert code == 0, log
    want = json.loads((single / "metrics.json").read_text())
    for name, value in want["test"].items():
        assert metrics["test"][name] == pytest.approx(value, rel=1e-4), name
    got_rows = (workdir / "history.csv").read_text().splitlines()[1:]
    want_rows = (single / "history.csv").read_text().splitlines()[1:]
    for got, want_row in zip(got_rows, want_rows, strict=True):
        got_loss = [float(v) for v in got.split(",")[1:3]]
        want_loss = [float(v) for v in want_row.split(",")[1:3]]
        assert got_loss == pytest.approx(want_loss, rel=1e-5)
