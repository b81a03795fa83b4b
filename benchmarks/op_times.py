"""TensorFlow's own account of a conv train step: `python -m benchmarks.op_times PRECISION`, run
by `benchmarks.where_time_goes`, profiles a few conv steps with the TensorFlow profiler and
prints, as one JSON line, the milliseconds per step of each op type (summed over the threads
that ran them) and the process's CPU milliseconds per step.
"""

import collections
import json
import os
import sys
import tempfile

from benchmarks.primitives import conv_train_steps

STEPS_PROFILED = 10


def op_type_ms(xspace_bytes: bytes, steps: int) -> dict:
    """{op type: ms per step} from a profiler XSpace: the host's TensorFlow op events, whose
    names read "scope/name:OpType"."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(xspace_bytes)
    totals = collections.defaultdict(float)
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                scope, _, op_type = name.rpartition(":")
                if "/" in scope and op_type:  # TF ops only, not the runtime's own events
                    totals[op_type] += event.duration_ps / 1e9 / steps
    return dict(totals)


def main(precision: str) -> None:
    import tensorflow as tf

    train_steps, iterator = conv_train_steps(precision)
    with tempfile.TemporaryDirectory(prefix="op_times_") as logdir:
        before = os.times()
        tf.profiler.experimental.start(logdir)
        train_steps(iterator, STEPS_PROFILED).numpy()
        tf.profiler.experimental.stop()
        after = os.times()
        (xspace,) = [
            os.path.join(root, name)
            for root, _, names in os.walk(logdir)
            for name in names
            if name.endswith(".xplane.pb")
        ]
        with open(xspace, "rb") as f:
            ops = op_type_ms(f.read(), STEPS_PROFILED)
    cpu_ms = (after.user + after.system - before.user - before.system) / STEPS_PROFILED * 1e3
    print(json.dumps({"precision": precision, "cpu_ms": cpu_ms, "ops": ops}))


if __name__ == "__main__":
    main(sys.argv[1])
