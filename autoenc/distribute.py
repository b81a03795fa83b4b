"""Which devices train: `--strategy=mirrored` is MirroredStrategy over the local GPUs, else the
logical CPU devices of `configure_cpu_devices`; `multi_worker` is MultiWorkerMirroredStrategy over
the machines in `TF_CONFIG` or a Slurm job step's tasks, where only the chief writes results."""

import json
import os
import subprocess

import tensorflow as tf

from autoenc.errors import UsageError, UserError

STRATEGIES = ("mirrored", "multi_worker")
ClusterResolver = tf.distribute.cluster_resolver.ClusterResolver

# What SlurmClusterResolver reads; srun sets them for every task of a job step.
SLURM_STEP_VARIABLES = tuple(
    "SLURM_PROCID SLURM_STEP_NUM_TASKS SLURM_STEP_NODELIST SLURM_STEP_TASKS_PER_NODE".split()
)
# Without reserved ports, job J's tasks on a node take ports FIRST + (J mod JOBS) * BLOCK + i.
SLURM_PORTS_FIRST, SLURM_PORTS_JOBS, SLURM_PORTS_BLOCK = 20000, 1000, 16


def configure_cpu_devices(count: int) -> None:
    """Splits the CPU into `count` logical devices, before TensorFlow initialises its devices
    (then a no-op if it has that split already, else a `UsageError`)."""
    if count < 1:
        raise UsageError(f"--cpu_devices={count}: must be at least 1")
    cpu = tf.config.list_physical_devices("CPU")[0]
    devices = [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    try:
        tf.config.set_logical_device_configuration(cpu, devices)
    except RuntimeError:  # devices already initialised
        existing = len(tf.config.list_logical_devices("CPU"))
        if existing != count:
            raise UsageError(
                f"--cpu_devices={count}: TensorFlow already started with {existing} CPU devices"
            ) from None


def cluster_resolver(name: str) -> ClusterResolver | None:
    """The cluster a multi-worker run spans, from TF_CONFIG or Slurm; None for `mirrored`."""
    if name not in STRATEGIES:
        raise UsageError(f"--strategy={name}: must be one of {', '.join(STRATEGIES)}")
    if name == "mirrored":
        return None
    if "TF_CONFIG" in os.environ:
        try:
            tf_config = json.loads(os.environ["TF_CONFIG"])
            workers, task = tf_config["cluster"]["worker"], tf_config["task"]
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
    """TensorFlow's SlurmClusterResolver for this job step, without its faults: each task keeps
    its GPUs (TensorFlow's runs `nvidia-smi` and rewrites `CUDA_VISIBLE_DEVICES`); tasks follow
    Slurm's node order, not sorted names; `scontrol` expands node lists it cannot parse; ports are
    the step's reserved ones or a block by job ID, not 8888... for every job; and the task is
    resolved at once (else every task would look like the chief)."""
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
    reserved = os.environ.get("SLURM_STEP_RESV_PORTS", "")  # "12000-12003" or "12000"
    if reserved:
        ports = int(reserved.split(",")[0].split("-")[0])
    else:
        job = int(os.environ["SLURM_JOB_ID"])
        ports = SLURM_PORTS_FIRST + (job % SLURM_PORTS_JOBS) * SLURM_PORTS_BLOCK
    # This task's GPUs (0: one CPU device) as physical devices, which honour CUDA_VISIBLE_DEVICES
    # and do not start the runtime.
    gpus = len(tf.config.list_physical_devices("GPU"))
    resolver = _SlurmClusterResolver(
        port_base=ports, gpus_per_node=gpus * tasks_per_node, gpus_per_task=gpus, auto_set_gpu=False
    )
    resolver.cluster_spec()  # sets task_type and task_id
    return resolver


class _SlurmClusterResolver(tf.distribute.cluster_resolver.SlurmClusterResolver):
    """Task i of the step is worker i, laid out over the nodes in the node list's order, as
    Slurm's default (block) distribution and any distribution with one task per node place it."""

    def _resolve_hostlist(self) -> list[str]:
        try:
            return super()._resolve_hostlist()
        except ValueError:  # a node list TensorFlow cannot parse: Slurm expands it
            nodelist = os.environ["SLURM_STEP_NODELIST"]
        cannot = f"cannot expand SLURM_STEP_NODELIST={nodelist!r} with scontrol show hostnames"
        command = ["scontrol", "show", "hostnames", nodelist]
        try:
            result = subprocess.run(command, capture_output=True, text=True)
        except OSError as e:  # no scontrol on this node
            raise UsageError(f"{cannot}: {e}") from None
        hosts = result.stdout.split()
        if result.returncode or not hosts:  # the last line of scontrol's says why
            raise UsageError(f"{cannot}: {(result.stderr.splitlines() or ['no names'])[-1]}")
        return hosts

    def cluster_spec(self) -> tf.train.ClusterSpec:
        workers = [
            f"{host}:{self._port_base + index}"
            for host, count in self._task_configuration.items()  # Slurm's node order, unsorted
            for index in range(count)
        ]
        self.task_type, self.task_id = "worker", self._rank
        return tf.train.ClusterSpec({"worker": workers})


def is_chief(resolver: ClusterResolver | None) -> bool:
    """Whether this process writes the run's results: always for a single-machine run."""
    if resolver is None or resolver.task_type in (None, "chief"):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def make_strategy(resolver: ClusterResolver | None = None) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy over `resolver`'s cluster (made before any other op runs);
    without one, MirroredStrategy over every local GPU, else over every logical CPU device."""
    if resolver is None:
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[device.name for device in devices])
    # NCCL between GPUs, TensorFlow's ring on CPUs; listing logical devices would start the runtime.
    implementation = tf.distribute.experimental.CommunicationImplementation
    gpus = tf.config.list_physical_devices("GPU")
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=implementation.NCCL if gpus else implementation.AUTO
    )
    return tf.distribute.MultiWorkerMirroredStrategy(resolver, communication_options=options)


def _replica_sum(strategy: tf.distribute.Strategy):
    """A tf.function summing a tensor over every replica of every worker (all must call it)."""

    @tf.function
    def replica_sum(value):
        return strategy.reduce("SUM", strategy.run(lambda: tf.identity(value)), axis=None)

    return replica_sum


def make_any_worker(strategy: tf.distribute.Strategy):
    """Builds `any_worker(flag) -> bool`, True if the flag is set on any worker (on one machine,
    the flag itself), so a SIGTERM reaching one worker stops all after the same step."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return bool
    count_set = _replica_sum(strategy)
    return lambda flag: bool(count_set(tf.constant(int(bool(flag)))) > 0)


def check_workers_agree(strategy: tf.distribute.Strategy, step: int) -> None:
    """Refuses to train if the workers restored different checkpoints (multi-worker only): with
    a workdir not every worker sees, their all-reduces would pair up wrong or hang."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    # n values are all equal exactly when n * sum(x^2) == sum(x)^2; every worker decides alike.
    sums = _replica_sum(strategy)(tf.constant([step, step * step], tf.int64))
    total, total_of_squares = (int(v) for v in sums)
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
    """Splits each global batch across replicas by data (every worker builds the same batches and
    keeps its slices); one replica gets the dataset unchanged (a distributed iterator costs CPU)."""
    if strategy.num_replicas_in_sync == 1:
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))
