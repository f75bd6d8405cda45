"""The Temporal worker of bench/peers (a process of its own, as deployed):
  python worker.py HOST:PORT"""
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from temporalio.client import Client  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

import wf  # noqa: E402


async def main():
    if len(sys.argv) != 2:
        sys.exit("usage: worker.py HOST:PORT")
    client = await Client.connect(sys.argv[1])
    worker = Worker(client, task_queue=wf.QUEUE, workflows=[wf.One, wf.Three],
                    activities=[wf.step])
    print("worker ready", flush=True)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
