"""The gateway's view of its nodes' reachability: it follows each node channel's connectivity,
says when a node is lost or back, and keeps the gateway's gRPC health truthful: NOT_SERVING
while a node it needs is unreachable (with --degraded, only while every node is)."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2

_UP, _DOWN = grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE


class NodeWatch:
    def __init__(self, channels: list, addresses: list[str], health, service_names: list[str], *,
                 degraded: bool, events=None):
        self._channels, self._addresses = channels, addresses
        self._health, self._names = health, ["", *service_names]
        self._degraded, self._events = degraded, events
        self.up = [True] * len(channels)  # until a connection attempt fails
        self._serving = True
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        """Follow every channel on the running loop (and ask each to connect now)."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._follow(k, channel)) for k, channel in enumerate(self._channels)]

    async def _follow(self, k: int, channel) -> None:
        try:
            while True:
                state = channel.get_state(try_to_connect=True)
                # IDLE and CONNECTING say nothing yet: the last definite state stands
                if state in (_UP, _DOWN) and self.up[k] != (state is _UP):
                    self.up[k] = state is _UP
                    self._tell(k)
                    await self._update_health()
                await channel.wait_for_state_change(state)
        except (asyncio.CancelledError, grpc.aio.UsageError, RuntimeError):
            return

    def _tell(self, k: int) -> None:
        if self._events is None:
            return
        if self.up[k]:
            self._events.emit("node_back", f"node {k} ({self._addresses[k]}) is reachable again",
                              node=k, address=self._addresses[k])
        else:
            self._events.emit("node_lost", f"node {k} ({self._addresses[k]}) is unreachable",
                              level="warning", node=k, address=self._addresses[k])

    def serving(self) -> bool:
        return any(self.up) if self._degraded else all(self.up)

    async def _update_health(self) -> None:
        serving = self.serving()
        if serving == self._serving:
            return
        self._serving = serving
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in self._names:
            await self._health.set(name, status)

    async def aclose(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
