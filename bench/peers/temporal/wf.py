"""Temporal workflows of bench/peers: one and three activities, each the
trivial step of ours ("step I of N")."""
from datetime import timedelta

from temporalio import activity, workflow

QUEUE = "bench"


@activity.defn
async def step(i: int, n: int) -> str:
    return "step %d of %d" % (i, n)


def _opts():
    return {"start_to_close_timeout": timedelta(seconds=300)}


@workflow.defn
class One:
    @workflow.run
    async def run(self, n: int) -> str:
        return await workflow.execute_activity(step, args=[0, n], **_opts())


@workflow.defn
class Three:
    @workflow.run
    async def run(self, n: int) -> list:
        return [await workflow.execute_activity(step, args=[i, n], **_opts())
                for i in range(3)]
