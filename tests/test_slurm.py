"""Training under a real one-node Slurm cluster (tests/slurm_cluster.py), as docs/slurm.md says.

1. `srun --ntasks=2 python launch.py --config=conv_denoise --strategy=multi_worker ...`, with no
   TF_CONFIG: SlurmClusterResolver finds the two workers, which train one run with the same
   weights on both tasks, only task 0 writing the workdir, and the same losses as one process
   training the same config alongside (the same checks as tests/test_multi_worker.py).
2. docs/slurm_job.sbatch, submitted with sbatch as one node with two tasks: once the first
   checkpoint exists, `scancel --signal=TERM` stops both tasks after the same step with exit 75,
   the script requeues the job, and its second run of the same srun command resumes and ends
   with the weights of the uninterrupted run of 1.
Also `distribute.slurm_cluster_resolver` on made-up job-step environments (no cluster needed).
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
from slurm_cluster import slurm_cluster, wait_until  # noqa: F401 (slurm_cluster: a fixture)

from autoenc import data, distribute
from autoenc.errors import UsageError

REPO = pathlib.Path(__file__).resolve().parent.parent
HAVE_REAL_DATA = (pathlib.Path(data.DEBIAN_DIR) / "train-images-idx3-ubyte.gz").exists()
EPOCHS = 2
# Two steps of 128 images an epoch, one step per call (a signal is looked at after each call
# and each epoch); most of the time goes to evaluating the 10,000 test images.
RUN = [
    "--config=conv_denoise",
    "--config.train_examples=256",
    "--config.steps_per_loop=1",
    "--config.image_every_epochs=0",
    f"--config.epochs={EPOCHS}",
]
TIMEOUT = 300
# States of a job that has not ended for good (a requeued job goes back to PENDING).
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "SIGNALING"}


def fingerprints(log: str) -> dict[int, str]:
    """Task number -> its `weights fingerprint`, from `srun --label` output."""
    return {int(t): f for t, f in re.findall(r"^\s*(\d+): .*weights fingerprint (\w+)", log, re.M)}


def exit_codes(log: str) -> dict[int, int]:
    """Task number -> exit code, from srun's "task 1: Exited ..." or "tasks 0-1: Exited ..."."""
    codes = {}
    for first, last, code in re.findall(
        r"tasks? (\d+)(?:-(\d+))?: Exited with exit code (\d+)", log
    ):
        for task in range(int(first), int(last or first) + 1):
            codes[task] = int(code)
    return codes


def history_losses(workdir: pathlib.Path) -> list[list[float]]:
    rows = (workdir / "history.csv").read_text().splitlines()[1:]
    return [[float(v) for v in row.split(",")[1:3]] for row in rows]


@pytest.fixture(scope="module")
def uninterrupted(slurm_cluster, tmp_path_factory):  # noqa: F811
    """The srun run of 1 and, at the same time, the same config in one process."""
    if not HAVE_REAL_DATA and os.environ.get("CI") != "true":
        pytest.skip("needs the real Fashion-MNIST (apt-get install dataset-fashion-mnist)")
    tmp = tmp_path_factory.mktemp("srun")
    workdir, srun_log, single_log = tmp / "run", tmp / "srun.log", tmp / "single.log"
    with open(single_log, "w") as single_out, open(srun_log, "w") as srun_out:
        single = subprocess.Popen(
            [sys.executable, "launch.py", *RUN, f"--workdir={tmp / 'single'}"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=single_out,
        )
        srun = subprocess.Popen(
            ["srun", "--ntasks=2", "--label", "--job-name=autoenc-srun", sys.executable]
            + ["launch.py", *RUN, "--strategy=multi_worker", f"--workdir={workdir}"],
            cwd=REPO,
            env=slurm_cluster.env,
            stdout=srun_out,
            stderr=subprocess.STDOUT,
        )
    try:
        job_id = wait_until(
            lambda: _running(srun, srun_log) and _job_id(slurm_cluster, "autoenc-srun"),
            "srun job",
            TIMEOUT,
        )
        pids = wait_until(
            lambda: _running(srun, srun_log) and _two_tasks(slurm_cluster.task_pids(job_id, "0")),
            "2 tasks",
            TIMEOUT,
        )
        srun.wait(timeout=TIMEOUT)
        single.wait(timeout=TIMEOUT)
    finally:
        for process in (srun, single):
            if process.poll() is None:
                process.kill()
    return dict(
        workdir=workdir,
        single=tmp / "single",
        code=srun.returncode,
        log=srun_log.read_text(),
        single_code=single.returncode,
        single_log=single_log.read_text(),
        pids=pids,
    )


def _running(process: subprocess.Popen, log: pathlib.Path) -> bool:
    assert process.poll() is None, f"ended with {process.returncode}:\n{log.read_text()}"
    return True


def _job_id(cluster, name: str) -> str:
    out = cluster.run(["squeue", "--noheader", f"--name={name}", "--format=%i"]).stdout
    return out.strip()


def _two_tasks(pids: dict[int, int]) -> dict[int, int]:
    return pids if sorted(pids.values()) == [0, 1] else {}


def test_srun_two_workers_train_one_run_like_one_process(uninterrupted):
    log = uninterrupted["log"]
    assert uninterrupted["code"] == 0, log
    assert uninterrupted["single_code"] == 0, uninterrupted["single_log"]
    for task in (0, 1):  # each task is one worker of two, with its own index
        assert re.search(
            rf"^\s*{task}: .*2 replica\(s\) \(/job:worker/replica:0/task:{task}/", log, re.M
        )
    prints = fingerprints(log)
    assert sorted(prints) == [0, 1] and prints[0] == prints[1], log

    # Only task 0 wrote the workdir: every event file (named ".<host>.<pid>.<n>.v2") is its.
    workdir, pids = uninterrupted["workdir"], uninterrupted["pids"]
    event_pids = {int(path.name.split(".")[-3]) for path in workdir.rglob("events.out.tfevents.*")}
    assert event_pids and {pids[pid] for pid in event_pids} == {0}, (event_pids, pids)
    assert int((workdir / ".lock").read_text()) in event_pids

    # One process, one replica, the same global batch: the same training.
    metrics = json.loads((workdir / "metrics.json").read_text())
    want = json.loads((uninterrupted["single"] / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and want["replicas"] == 1
    assert metrics["epochs_completed"] == EPOCHS
    for name, value in want["test"].items():
        assert metrics["test"][name] == pytest.approx(value, rel=1e-4), name
    got, expected = history_losses(workdir), history_losses(uninterrupted["single"])
    assert len(got) == len(expected) == EPOCHS
    for got_row, want_row in zip(got, expected, strict=True):
        assert got_row == pytest.approx(want_row, rel=1e-5)


def test_sbatch_script_preempted_by_scancel_requeues_and_resumes_identically(
    slurm_cluster,  # noqa: F811
    uninterrupted,
    tmp_path,
):
    workdir, output = tmp_path / "run", tmp_path / "job.out"
    python_dir = pathlib.Path(sys.executable).parent  # the script runs `python` from PATH
    env = dict(slurm_cluster.env, PATH=f"{python_dir}:{os.environ['PATH']}")
    # docs/slurm_job.sbatch as it is, made a one-node, two-task, CPU-only job by sbatch options.
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--nodes=1", "--ntasks-per-node=2", "--gpus-per-node=0"]
        + ["--cpus-per-task=1", "--time=10", f"--output={output}", "docs/slurm_job.sbatch"]
        + [*RUN, f"--workdir={workdir}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    job_id = submitted.stdout.strip().split(";")[0]

    def checkpointed() -> bool:
        job = slurm_cluster.job(job_id)
        assert job["JobState"] in ACTIVE, (job, output.exists() and output.read_text())
        return (workdir / "checkpoints" / "checkpoint").exists()

    def ended() -> dict[str, str]:
        job = slurm_cluster.job(job_id)
        return job if job["JobState"] not in ACTIVE else {}

    # The first checkpoint is there (end of epoch 1 of 2): signal both tasks, which stop at
    # their next look, with at least an epoch and the test images still to go.
    wait_until(checkpointed, "first checkpoint", TIMEOUT)
    slurm_cluster.run(["scancel", "--signal=TERM", job_id])
    job = wait_until(ended, "end of the job", TIMEOUT)
    log = output.read_text()
    assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", (job, log)
    assert job["Restarts"] == "1", log

    first, _, second = log.partition("training stopped at a checkpoint (exit 75); requeueing")
    assert second, log
    assert exit_codes(first) == {0: 75, 1: 75}, first
    stops = dict(
        re.findall(r"^\s*(\d+): .*stopped by .* at step (\d+); checkpoint saved", first, re.M)
    )
    assert sorted(stops) == ["0", "1"] and stops["0"] == stops["1"], first
    assert len(re.findall(r"^\s*\d+: .*Resuming from", second, re.M)) == 2, second
    final = fingerprints(second)
    assert sorted(final) == [0, 1] and final == fingerprints(uninterrupted["log"]), second
    assert json.loads((workdir / "metrics.json").read_text())["epochs_completed"] == EPOCHS


def step_environment(monkeypatch, **variables) -> None:
    """Makes this process look like one task of a Slurm job step (and of nothing else)."""
    for name in [name for name in os.environ if name.startswith("SLURM_")] + ["TF_CONFIG"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def test_slurm_resolver_cpu_nodes_one_task_each_ports_by_job_id(monkeypatch):
    step_environment(
        monkeypatch,
        SLURM_JOB_ID="4242",
        SLURM_PROCID="1",
        SLURM_STEP_NUM_TASKS="2",
        SLURM_STEP_NODELIST="node[07-08]",
        SLURM_STEP_TASKS_PER_NODE="1(x2)",
    )
    resolver = distribute.cluster_resolver("multi_worker")
    assert not distribute.is_chief(resolver)  # before anything asks for the spec
    port = distribute.SLURM_PORTS_FIRST + 242 * distribute.SLURM_PORTS_BLOCK
    assert resolver.cluster_spec().as_dict() == {"worker": [f"node07:{port}", f"node08:{port}"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)
    assert resolver.num_accelerators() == {"GPU": 0}  # MultiWorkerMirroredStrategy: one CPU


def test_slurm_resolver_two_tasks_on_a_node_use_reserved_ports(monkeypatch):
    step_environment(
        monkeypatch,
        SLURM_JOB_ID="7",
        SLURM_PROCID="0",
        SLURM_STEP_NUM_TASKS="2",
        SLURM_STEP_NODELIST="localhost",
        SLURM_STEP_TASKS_PER_NODE="2",
        SLURM_STEP_RESV_PORTS="12000-12002",
    )
    resolver = distribute.cluster_resolver("multi_worker")
    assert distribute.is_chief(resolver)  # before anything asks for the spec
    assert resolver.cluster_spec().as_dict() == {"worker": ["localhost:12000", "localhost:12001"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 0)


def test_slurm_resolver_numbers_tasks_in_slurms_node_order(monkeypatch):
    step_environment(
        monkeypatch,
        SLURM_JOB_ID="11",
        SLURM_PROCID="0",
        SLURM_STEP_NUM_TASKS="3",
        SLURM_STEP_NODELIST="node[9-10]",
        SLURM_STEP_TASKS_PER_NODE="1,2",
        SLURM_STEP_RESV_PORTS="13000-13002",
    )
    resolver = distribute.cluster_resolver("multi_worker")
    # Task 0 runs on node9, the first node; sorting the names would put node10 first.
    assert resolver.cluster_spec().as_dict() == {
        "worker": ["node9:13000", "node10:13000", "node10:13001"]
    }
    assert distribute.is_chief(resolver)


def test_slurm_resolver_node_list_tensorflow_cannot_parse(monkeypatch, slurm_cluster):  # noqa: F811
    step_environment(
        monkeypatch,
        SLURM_CONF=str(slurm_cluster.conf),  # for `scontrol show hostnames`
        SLURM_JOB_ID="12",
        SLURM_PROCID="3",
        SLURM_STEP_NUM_TASKS="4",
        SLURM_STEP_NODELIST="r[1-2]n[1-2]",
        SLURM_STEP_TASKS_PER_NODE="1(x4)",
        SLURM_STEP_RESV_PORTS="13000",
    )
    resolver = distribute.cluster_resolver("multi_worker")
    hosts = ["r1n1", "r1n2", "r2n1", "r2n2"]
    assert resolver.cluster_spec().as_dict() == {"worker": [f"{h}:13000" for h in hosts]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 3)


def test_slurm_resolver_keeps_the_gpus_slurm_gave(monkeypatch):
    step_environment(
        monkeypatch,
        SLURM_JOB_ID="9",
        SLURM_PROCID="1",
        SLURM_STEP_NUM_TASKS="2",
        SLURM_STEP_NODELIST="gpu[1-2]",
        SLURM_STEP_TASKS_PER_NODE="1(x2)",
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    real = distribute.tf.config.list_physical_devices
    # What TensorFlow lists on a GPU node under CUDA_VISIBLE_DEVICES=2,3:
    gpus = ["/physical_device:GPU:0", "/physical_device:GPU:1"]
    monkeypatch.setattr(
        distribute.tf.config,
        "list_physical_devices",
        lambda kind=None: gpus if kind == "GPU" else real(kind),
    )
    resolver = distribute.cluster_resolver("multi_worker")
    assert len(resolver.cluster_spec().as_dict()["worker"]) == 2
    assert resolver.num_accelerators() == {"GPU": 2}
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"  # TensorFlow's default would set "0,1"


def test_slurm_job_without_a_step_says_to_use_srun(monkeypatch):
    step_environment(monkeypatch, SLURM_JOB_ID="5", SLURM_PROCID="0")  # a batch script's shell
    with pytest.raises(UsageError, match="start every worker with srun"):
        distribute.cluster_resolver("multi_worker")
