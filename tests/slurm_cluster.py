"""A private one-node Slurm cluster for the tests: munged, slurmctld and slurmd on 127.0.0.1.

`slurm_cluster` (a session-scoped pytest fixture) writes a minimal `slurm.conf` for one node,
`localhost` at 127.0.0.1 with 2 CPUs, into a fresh temporary directory that also holds the
daemons' state, spool, logs, PID files, and a MUNGE key and socket of their own; it starts the
three daemons in the foreground as child processes, waits until `sinfo` shows the node idle,
and at the end cancels any job left and stops each daemon by its PID. Nothing of the system's
Slurm or MUNGE (/etc/slurm, /etc/munge, a running munged) is read or touched: every client
command gets `SLURM_CONF` pointing at this cluster's file, and every `SLURM_*` variable of the
calling environment is dropped, so a test suite run inside a real Slurm job stays out of it
(and `TF_CONFIG`, so that training finds its workers through Slurm).

Slurm not installed skips the tests that use the fixture, except under `CI=true`, where it and
any failure to start the cluster fail them. `python tests/slurm_cluster.py` starts the same
cluster by hand (docs/slurm.md), until Ctrl-C.
"""

import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd")
CLIENTS = ("srun", "sbatch", "sinfo", "squeue", "scontrol", "scancel")
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # Debian's daemons are in sbin, not in every PATH
NODE = "localhost"
CPUS = 2
START_TIMEOUT = 60  # seconds for the daemons to come up and the node to be idle
STOP_TIMEOUT = 30
# Slurm holds a requeued job for the job credentials' lifetime (cred_expire, default 120 s);
# 10 s is still ample for a step launch on one node.
CRED_EXPIRE = 10
# Slurm hands each job step ports from this cluster's block (SLURM_STEP_RESV_PORTS): one of
# these blocks below Linux's ephemeral ports, picked at random so that two test sessions on one
# machine are unlikely to share one.
STEP_PORT_BLOCKS = range(20000, 32000, 500)


class ClusterError(RuntimeError):
    """The cluster did not start, or did not answer as expected."""


def slurm_environment(conf: pathlib.Path) -> dict[str, str]:
    """This process's environment without any SLURM_* variable or TF_CONFIG (jobs must find
    their workers through Slurm), plus SLURM_CONF=conf."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != "TF_CONFIG"}
    env["SLURM_CONF"] = str(conf)
    env["PATH"] = f"{os.environ.get('PATH', '')}:{SYSTEM_PATH}"
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, what: str, timeout: float, interval: float = 0.2):
    """Polls `condition()` until it returns something true, and returns that.

    Raises:
        ClusterError: `timeout` seconds passed first.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise ClusterError(f"no {what} within {timeout} s")
        time.sleep(interval)  # polling a condition with a deadline, not synchronising by time


class SlurmCluster:
    """One node, `localhost`, with its controller, node daemon and MUNGE in `root`."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = slurm_environment(self.conf)
        self.daemons: dict[str, subprocess.Popen] = {}

    def write_config(self) -> None:
        root = self.root
        for name in ("munge", "state", "spool", "log"):
            (root / name).mkdir()
        (root / "plugstack.conf").write_text("")  # not the system's SPANK plugins
        first_port = random.choice(STEP_PORT_BLOCKS)
        ports = f"{first_port}-{first_port + STEP_PORT_BLOCKS.step - 1}"
        host = socket.gethostname().split(".")[0]  # slurmctld refuses any other name
        lines = [
            "ClusterName=autoenc-test",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={root / 'munge' / 'munge.socket'},cred_expire={CRED_EXPIRE}",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
            f"PlugStackConfig={root / 'plugstack.conf'}",
            "MailProg=/bin/true",
            # No cgroups, accounting or MPI plugins: none is needed on one node, and a
            # container may not allow cgroups.
            "ProctrackType=proctrack/pgid",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            f"MpiParams=ports={ports}",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            # CPUs=2 even on a machine with fewer: trust the configured node, not the hardware.
            "SlurmdParameters=config_overrides",
            "ReturnToService=2",
            "KillWait=5",
            # Look at pending jobs every second, not every minute: a requeued job waits for
            # this loop once its hold is over.
            "SchedulerParameters=sched_interval=1",
            f"NodeName={NODE} NodeAddr=127.0.0.1 CPUs={CPUS} State=UNKNOWN",
            f"PartitionName=test Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """Starts munged, slurmctld and slurmd and waits until the node is idle."""
        self.write_config()
        munge = self.root / "munge"
        run(["mungekey", "--create", f"--keyfile={munge / 'munge.key'}"], self.env)
        # --force: munged wants world-executable parent directories for its socket, which a
        # private temporary directory is not; every client here runs as root anyway.
        self._start(
            "munged",
            ["munged", "--foreground", "--force", f"--socket={munge / 'munge.socket'}"]
            + [f"--key-file={munge / 'munge.key'}", f"--pid-file={munge / 'munged.pid'}"]
            + [f"--seed-file={munge / 'munged.seed'}"],
        )
        wait_until(
            lambda: self._daemons_alive() and (munge / "munge.socket").exists(),
            "MUNGE socket",
            START_TIMEOUT,
        )
        self._start("slurmctld", ["slurmctld", "-D"])
        self._start("slurmd", ["slurmd", "-D", "-N", NODE])
        wait_until(self._node_idle, "idle node in `sinfo`", START_TIMEOUT)

    def _start(self, name: str, command: list[str]) -> None:
        output = open(self.root / "log" / f"{name}.out", "w")  # noqa: SIM115 (daemon's lifetime)
        self.daemons[name] = subprocess.Popen(
            command, cwd=self.root, env=self.env, stdout=output, stderr=subprocess.STDOUT
        )
        output.close()  # the child has its own copy

    def _daemons_alive(self) -> bool:
        """True; raises `ClusterError` with its output if a daemon has exited."""
        for name, process in self.daemons.items():
            if process.poll() is not None:
                tail = (self.root / "log" / f"{name}.out").read_text()[-2000:]
                raise ClusterError(f"{name} exited with {process.returncode}:\n{tail}")
        return True

    def _node_idle(self) -> bool:
        self._daemons_alive()
        states = self.run(["sinfo", "--noheader", "--format=%T"], check=False).stdout.split()
        return states == ["idle"]

    def run(self, command: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """Runs a Slurm client command against this cluster; output captured as text."""
        return run(command, self.env, check=check, **kwargs)

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, ExitCode, Restarts, ...)."""
        out = self.run(["scontrol", "--oneliner", "show", "job", job_id]).stdout
        return dict(field.split("=", 1) for field in out.split() if "=" in field)

    def task_pids(self, job_id: str, step: str) -> dict[int, int]:
        """The PIDs of a running job step's tasks on this node, each with its task ID."""
        out = self.run(["scontrol", "listpids", f"{job_id}.{step}"], check=False).stdout
        pids = {}
        for line in out.splitlines()[1:]:  # PID JOBID STEPID LOCALID GLOBALID
            fields = line.split()
            if len(fields) == 5 and fields[4].isdigit():
                pids[int(fields[0])] = int(fields[4])
        return pids

    def stop(self) -> None:
        """Cancels every job left, then stops the daemons this cluster started, by PID."""
        try:
            if "slurmctld" in self.daemons and self.daemons["slurmctld"].poll() is None:
                self.run(["scancel", "--full", "--user=root"], check=False, timeout=STOP_TIMEOUT)
                wait_until(
                    lambda: not self.run(["squeue", "--noheader"], check=False).stdout.strip(),
                    "empty queue",
                    STOP_TIMEOUT,
                )
                wait_until(lambda: not self.step_daemons(), "end of slurmstepd", STOP_TIMEOUT)
        finally:
            for name in ("slurmd", "slurmctld", "munged"):
                process = self.daemons.pop(name, None)
                if process and process.poll() is None:
                    os.kill(process.pid, signal.SIGTERM)
                    try:
                        process.wait(timeout=STOP_TIMEOUT)
                    except subprocess.TimeoutExpired:
                        os.kill(process.pid, signal.SIGKILL)
                        process.wait()
            for pid in self.step_daemons():  # slurmd's orphans, if it died under a job step
                os.kill(pid, signal.SIGKILL)  # (slurmstepd ignores SIGTERM)

    def step_daemons(self) -> list[int]:
        """PIDs of this cluster's slurmstepd processes, which slurmd starts detached.

        They are told apart from any other cluster's by the SLURM_CONF they inherited.
        """
        ours = f"SLURM_CONF={self.conf}".encode()
        pids = []
        for proc in pathlib.Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and (proc / "comm").read_text().strip() == "slurmstepd":
                    if ours in (proc / "environ").read_bytes().split(b"\0"):
                        pids.append(int(proc.name))
            except OSError:  # gone meanwhile
                continue
        return pids


def run(command, env, check=True, timeout=60, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, **kwargs
    )
    if check and result.returncode:
        raise ClusterError(f"{' '.join(command)} exited with {result.returncode}: {result.stderr}")
    return result


def _unavailable(reason: str) -> None:
    """Skips on a developer's machine without Slurm; under CI=true, fails."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"Slurm tests must run under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running one-node cluster (`SlurmCluster`); its `env` is for the commands tests run."""
    path = slurm_environment(pathlib.Path())["PATH"]
    missing = [name for name in DAEMONS + CLIENTS if shutil.which(name, path=path) is None]
    if missing:
        _unavailable(f"needs Slurm and MUNGE (apt-get install slurm-wlm munge): no {missing}")
    if os.geteuid() != 0:
        _unavailable("the test cluster's slurmd runs jobs as root, so it must start as root")
    cluster = SlurmCluster(pathlib.Path(tempfile.mkdtemp(prefix="autoenc-slurm-")))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


def main() -> None:
    """Starts the cluster, prints how to use it, and stops it on Ctrl-C or SIGTERM."""
    cluster = SlurmCluster(pathlib.Path(tempfile.mkdtemp(prefix="autoenc-slurm-")))
    try:
        cluster.start()
        # Blocked only now: the daemons would inherit the mask and ignore their SIGTERM.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        print(
            f"export SLURM_CONF={cluster.conf}  # one node, {NODE}, {CPUS} CPUs; Ctrl-C stops",
            flush=True,
        )
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


if __name__ == "__main__":
    main()
