"""The line protocol between `iteration_speed.py` and its worker processes.

Each implementation under test runs in its own process (so that its peak memory
is its own, and PyTorch can live in another virtual environment). A worker
builds and warms up, prints "ready", then answers each stdin line: "run N"
with the seconds that N units of work (DFAD iterations, or matmuls) took, and
"rss" with its peak resident memory in MiB. Plain Python only: both the
TensorFlow and the PyTorch environments import it.

Example:
    serve(lambda n: [loop.iteration() for _ in range(n)])
"""

import resource
import sys
import time


def serve(run):
    """Answers the orchestrator's commands on stdin until it closes.

    Args:
        run: callable taking a count and doing that many units of work; it
            may return the seconds the work itself took (else the call is timed).
    """
    print("ready", flush=True)
    for line in sys.stdin:
        command, *rest = line.split()
        if command == "run":
            start = time.perf_counter()
            seconds = run(int(rest[0]))
            print(time.perf_counter() - start if seconds is None else seconds, flush=True)
        elif command == "rss":
            print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, flush=True)
