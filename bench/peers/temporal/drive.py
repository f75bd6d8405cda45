"""The Temporal client of bench/peers: starts workflows on the dev server
and waits for their results, with the load of ../pydrive.py (one asyncio
task per run in flight). A case cut by --hard-cap terminates the workflows
still running.
  python drive.py --address HOST:PORT [pydrive options]"""
import asyncio
import os
import sys
import uuid

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, ".."))
import pydrive  # noqa: E402
from temporalio.client import Client  # noqa: E402

import wf  # noqa: E402


async def main():
    a = pydrive.parse(lambda p: p.add_argument("--address", required=True))
    client = await Client.connect(a.address)

    async def run(steps):
        out = await client.execute_workflow(
            wf.One.run if steps == 1 else wf.Three.run, 1,
            id="bench-" + uuid.uuid4().hex, task_queue=wf.QUEUE)
        if (out if steps == 1 else out[0]) != "step 0 of 1":
            raise RuntimeError("unexpected answer %r" % (out,))

    async def cleanup():
        ids = [w.id async for w in client.list_workflows("ExecutionStatus='Running'")]
        sem = asyncio.Semaphore(32)

        async def term(wid):
            async with sem:
                try:
                    await client.get_workflow_handle(wid).terminate("bench case cut")
                except Exception:
                    pass

        await asyncio.gather(*(term(w) for w in ids))
        print("temporal: terminated %d running workflows" % len(ids), file=sys.stderr)

    await pydrive.run_tasks(run, a, cleanup)


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    sys.stderr.flush()
    # the SDK's runtime threads can abort the interpreter's finalization
    # ("PyGILState_Release: thread state ... must be current"), turning a
    # finished run into exit 134: leave without finalizing
    os._exit(0)
