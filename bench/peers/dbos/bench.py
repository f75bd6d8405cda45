"""The DBOS side of bench/peers: workflows of one and three steps, each step
the trivial one of ours ("step I of N"), run in this process (DBOS is a
library: the workflow and its steps are checkpointed straight to
PostgreSQL), with the load of ../pydrive.py, one thread per run in flight.

  SW_DBOS_URL=postgresql://... python bench.py [pydrive options]
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import pydrive  # noqa: E402

from dbos import DBOS  # noqa: E402


@DBOS.step()
def step(i, n):
    return "step %d of %d" % (i, n)


@DBOS.workflow()
def one(n):
    return step(0, n)


@DBOS.workflow()
def three(n):
    return [step(i, n) for i in range(3)]


def run(steps):
    out = one(1) if steps == 1 else three(1)
    if (out if steps == 1 else out[0]) != "step 0 of 1":
        raise RuntimeError("unexpected answer %r" % (out,))


def main():
    a = pydrive.parse()
    url = os.environ.get("SW_DBOS_URL")
    if not url:
        sys.exit("bench.py: SW_DBOS_URL is not set")
    DBOS(config={"name": "swbench", "system_database_url": url,
                 "log_level": "WARNING", "console_log_level": "WARNING"})
    DBOS.launch()
    try:
        pydrive.run_threads(run, a)
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    main()
