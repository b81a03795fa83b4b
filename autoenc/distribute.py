"""Which devices train: one machine's GPUs (or logical CPU devices), or several machines.

`--strategy=mirrored` (the default) is MirroredStrategy over every local GPU, else over the
logical CPU devices. `--strategy=multi_worker` is TensorFlow's MultiWorkerMirroredStrategy over
the machines that the standard `TF_CONFIG` variable lists (or, without it, the tasks of the
Slurm job step it runs in: see `slurm_cluster_resolver`): every worker runs the same program,
the chief (task `chief`, or `worker` 0 when there is no chief) writes the results, and the
others write to a temporary directory.

On a CPU-only machine `configure_cpu_devices(n)` splits the CPU into n logical devices so that
MirroredStrategy has n replicas; this is how the tests (and a curious user) exercise the
multi-replica code paths without GPUs. It must run before TensorFlow initialises its devices.
"""

import json
import os
import subprocess

import tensorflow as tf

from autoenc.errors import UsageError, UserError

STRATEGIES = ("mirrored", "multi_worker")


def configure_cpu_devices(count: int) -> None:
    """Splits the physical CPU into `count` logical devices (no-op if already so).

    Raises:
        UsageError: count < 1, or TensorFlow's devices were initialised with another split.
    """
    if count < 1:
        raise UsageError(f"--cpu_devices={count}: must be at least 1")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError:
        # Devices already initialised: fine if they already have the split asked for.
        existing = len(tf.config.list_logical_devices("CPU"))
        if existing != count:
            raise UsageError(
                f"--cpu_devices={count}: TensorFlow already started with {existing} CPU devices"
            ) from None


def cluster_resolver(name: str) -> tf.distribute.cluster_resolver.ClusterResolver | None:
    """The cluster a multi-worker run spans, from TF_CONFIG or Slurm; None for `mirrored`.

    Raises:
        UsageError: an unknown strategy name, or multi_worker without a (valid) TF_CONFIG
            outside a Slurm job.
    """
    if name not in STRATEGIES:
        raise UsageError(f"--strategy={name}: must be one of {', '.join(STRATEGIES)}")
    if name == "mirrored":
        return None
    if "TF_CONFIG" in os.environ:
        try:
            tf_config = json.loads(os.environ["TF_CONFIG"])
            workers = tf_config["cluster"]["worker"]
            task = tf_config["task"]
            task["type"], int(task["index"])
        except (ValueError, KeyError, TypeError) as e:
            raise UsageError(
                'TF_CONFIG must be JSON like {"cluster": {"worker": ["host:port", ...]},'
                f' "task": {{"type": "worker", "index": 0}}}}; got {os.environ["TF_CONFIG"]!r}'
                f" ({type(e).__name__}: {e})"
            ) from None
        if not workers:
            raise UsageError("TF_CONFIG lists no workers")
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if "SLURM_JOB_ID" in os.environ:
        return slurm_cluster_resolver()
    raise UsageError(
        "--strategy=multi_worker needs TF_CONFIG (or a Slurm job) to say which machines take"
        " part; see docs/distributed.md"
    )


def slurm_cluster_resolver() -> tf.distribute.cluster_resolver.SlurmClusterResolver:
    """TensorFlow's SlurmClusterResolver for this job step, with its task already resolved.

    What TensorFlow's resolver would get wrong is set here instead:
    - GPUs: it counts the node's GPUs with `nvidia-smi`, which a CPU-only node lacks, and with
      none it cannot lay out the tasks at all (it steps through the GPUs by a step of 0). It
      also overwrites `CUDA_VISIBLE_DEVICES` with numbers of its own, which are wrong where
      Slurm gave the task GPUs 2 and 3. Here each task keeps the GPUs it sees, those Slurm
      made visible to it (`--gpus-per-node`, `--gpus-per-task`), possibly none.
    - Order: it lists the nodes sorted by name, so for "node[9-10]" it makes node10's task
      worker 0, while Slurm starts task 0 on node9. Here the tasks follow Slurm's node order.
    - Node lists: its parser takes one range, at the end of a name, and fails on lists
      Slurm makes of names such as r1n1 ("r[1-2]n[1-4]"); those are expanded by
      `scontrol show hostnames`.
    - Ports: it puts every job's tasks on ports 8888, 8889, ..., so two jobs sharing a node
      collide. Here the ports are those Slurm reserved for the step (`SLURM_STEP_RESV_PORTS`,
      when slurm.conf has `MpiParams=ports=...`), else a block of ports chosen by job ID.
    - Task: its task type and index stay None until its cluster spec is first asked for, so
      `is_chief` would take every task for the chief; here the spec is resolved at once.

    Raises:
        UsageError: the process is in a Slurm job but not in a job step (not started by srun).
    """
    missing = [name for name in SLURM_STEP_VARIABLES if name not in os.environ]
    if missing:
        raise UsageError(
            f"--strategy=multi_worker in Slurm job {os.environ['SLURM_JOB_ID']} needs a job step"
            f" (no {', '.join(missing)}): start every worker with srun, e.g. `srun python"
            " launch.py --strategy=multi_worker ...`"
        )
    # Slurm's compressed list of tasks per node: "2(x3),1" is 2, 2, 2, 1.
    counts = os.environ["SLURM_STEP_TASKS_PER_NODE"].split(",")
    tasks_per_node = max(int(count.split("(")[0]) for count in counts)
    # Physical devices, which honour Slurm's CUDA_VISIBLE_DEVICES and do not start the runtime.
    gpus = len(tf.config.list_physical_devices("GPU"))
    resolver = _SlurmClusterResolver(
        gpus_per_task=gpus, tasks_per_node=tasks_per_node, port_base=_slurm_port_base()
    )
    resolver.cluster_spec()  # sets task_type and task_id
    return resolver


# What SlurmClusterResolver reads; srun sets them for every task of a job step.
SLURM_STEP_VARIABLES = (
    "SLURM_PROCID",
    "SLURM_STEP_NUM_TASKS",
    "SLURM_STEP_NODELIST",
    "SLURM_STEP_TASKS_PER_NODE",
)
# Without reserved ports, job J's tasks on a node take ports FIRST + (J mod JOBS) * BLOCK + i.
SLURM_PORTS_FIRST, SLURM_PORTS_JOBS, SLURM_PORTS_BLOCK = 20000, 1000, 16


def _slurm_port_base() -> int:
    """The first port of this job step's tasks on each node (the same on every task)."""
    reserved = os.environ.get("SLURM_STEP_RESV_PORTS", "")
    if reserved:  # "12000-12003" or "12000"
        return int(reserved.split(",")[0].split("-")[0])
    job = int(os.environ["SLURM_JOB_ID"])
    return SLURM_PORTS_FIRST + (job % SLURM_PORTS_JOBS) * SLURM_PORTS_BLOCK


class _SlurmClusterResolver(tf.distribute.cluster_resolver.SlurmClusterResolver):
    """TensorFlow's resolver with Slurm's task layout and the GPUs each task sees (see
    `slurm_cluster_resolver`). Task i of the step is worker i; the tasks are laid out over the
    nodes in the node list's order, as Slurm's default (block) distribution places them, and
    as any distribution does with one task per node."""

    def __init__(self, gpus_per_task: int, tasks_per_node: int, port_base: int):
        super().__init__(
            port_base=port_base,
            gpus_per_node=gpus_per_task * tasks_per_node,
            gpus_per_task=gpus_per_task,  # what num_accelerators reports: 0 = one CPU device
            auto_set_gpu=False,
        )

    def _resolve_hostlist(self) -> list[str]:
        try:
            return super()._resolve_hostlist()
        except ValueError:  # a node list TensorFlow cannot parse
            return _slurm_hostnames(os.environ["SLURM_STEP_NODELIST"])

    def cluster_spec(self) -> tf.train.ClusterSpec:
        workers = [
            f"{host}:{self._port_base + index}"
            for host, count in self._task_configuration.items()  # Slurm's node order, unsorted
            for index in range(count)
        ]
        self.task_type, self.task_id = "worker", self._rank
        return tf.train.ClusterSpec({"worker": workers})


def _slurm_hostnames(nodelist: str) -> list[str]:
    """Slurm's own expansion of a node list ("r[1-2]n[1-2]" -> r1n1, r1n2, r2n1, r2n2)."""
    cannot = f"cannot expand SLURM_STEP_NODELIST={nodelist!r} with scontrol show hostnames"
    try:
        result = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True
        )
    except OSError as e:  # no scontrol on this node
        raise UsageError(f"{cannot}: {e}") from None
    hosts = result.stdout.split()
    if result.returncode or not hosts:  # the last line of scontrol's says why
        raise UsageError(f"{cannot}: {(result.stderr.splitlines() or ['no names'])[-1]}")
    return hosts


def is_chief(resolver: tf.distribute.cluster_resolver.ClusterResolver | None) -> bool:
    """Whether this process writes the run's results: always for a single-machine run."""
    if resolver is None or resolver.task_type in (None, "chief"):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def make_strategy(
    resolver: tf.distribute.cluster_resolver.ClusterResolver | None = None,
) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy over `resolver`'s cluster; without one, MirroredStrategy
    over every local GPU, else over every logical CPU device.

    A multi-worker strategy must be made before this process runs any other TensorFlow op.
    """
    if resolver is not None:  # NCCL all-reduce between GPUs; TensorFlow's ring on CPUs
        # (physical devices: listing logical ones would start the runtime before the strategy)
        implementation = tf.distribute.experimental.CommunicationImplementation
        has_gpus = bool(tf.config.list_physical_devices("GPU"))
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=implementation.NCCL if has_gpus else implementation.AUTO
        )
        return tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver, communication_options=options
        )
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy(devices=[device.name for device in devices])


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def make_any_worker(strategy: tf.distribute.Strategy):
    """Builds `any_worker(flag: bool) -> bool`: True if the flag is set on any worker.

    Every worker must call it at the same point of the run (it is an all-reduce). On one
    machine it is the flag itself. Used so that a SIGTERM reaching one worker stops all of
    them after the same step, each with its part of the same checkpoint.
    """
    if not is_multi_worker(strategy):
        return bool

    @tf.function
    def count_set(flag):
        per_replica = strategy.run(lambda: tf.identity(flag))
        return strategy.reduce("SUM", per_replica, axis=None)  # reduce has SUM and MEAN only

    return lambda flag: bool(count_set(tf.constant(int(bool(flag)))) > 0)


def check_workers_agree(strategy: tf.distribute.Strategy, step: int) -> None:
    """Refuses to train if the workers restored different checkpoints (multi-worker only).

    Non-chief workers resume from the chief's checkpoints, so the workdir must be a path every
    worker sees (a shared filesystem). If it is not, they would start from different steps and
    their all-reduces would pair up wrong or hang; this catches that before the first step.
    """
    if not is_multi_worker(strategy):
        return

    @tf.function
    def sum_and_sum_of_squares(value):
        per_replica = strategy.run(lambda: tf.stack([value, value * value]))
        return strategy.reduce("SUM", per_replica, axis=None)

    # n values are all equal exactly when n * sum(x^2) == sum(x)^2 (and every worker gets the
    # same two sums, so all of them decide alike; reduce offers no MIN or MAX).
    total, total_of_squares = (int(v) for v in sum_and_sum_of_squares(tf.constant(step, tf.int64)))
    if strategy.num_replicas_in_sync * total_of_squares != total * total:
        raise UserError(
            f"the workers resumed from different steps (this one from step {step}): --workdir"
            " must be on a filesystem every worker can read (non-chief workers resume from the"
            " chief's checkpoints)"
        )


def per_replica_batch(strategy: tf.distribute.Strategy, global_batch: int) -> int:
    """The per-replica batch; raises `UsageError` if the global batch does not split evenly."""
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise UsageError(
            f"--config.batch_size={global_batch} does not split evenly over {replicas} replicas;"
            f" use a multiple of {replicas}"
        )
    return global_batch // replicas


def distribute_dataset(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset):
    """Splits each global batch across replicas; a single replica gets the dataset unchanged.

    Sharding is by data, explicitly: every worker builds the same global batches (the same
    shuffle and the same noise, from the seed) and keeps its replicas' slices of each, so N
    workers see exactly the batches one machine would. (The default, sharding by files, does not
    apply to in-memory data and would fall back to this after a warning.)

    One replica needs no splitting, and `strategy.run` mirrors a plain tensor onto its one
    device, so it skips the distributed iterator, which costs CPU time in every step.
    """
    if strategy.num_replicas_in_sync == 1:
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))
