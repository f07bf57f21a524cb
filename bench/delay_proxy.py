"""A loopback TCP relay that adds a fixed delay in each direction (``--delay-ms``; 10 ms each way
makes about 20 ms of round trip), in its own process so its CPU is not the client's.

``python -m bench.delay_proxy --target 127.0.0.1:PORT --delay-ms 10`` prints one JSON line
``{"url": "http://127.0.0.1:P", "pid": N}`` and relays until its standard input closes. Every
chunk read from one side is written to the other ``delay`` later; chunks keep their order, and
reading pauses while more than ``--window`` bytes are on their way (a bandwidth-delay window, so
a bulk transfer is paced by the delay instead of buffering without bound). Listens on 127.0.0.1
only and connects only to the target given, which ``run.py`` sets to the emulator's address.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import sys
import time
from typing import Any

CHUNK = 256 * 1024


class _Direction:
    def __init__(self, window: int) -> None:
        self.items: collections.deque[tuple[float, bytes]] = collections.deque()
        self.pending = 0
        self.window = window
        self.changed = asyncio.Event()
        self.eof = False


async def _reader(reader: asyncio.StreamReader, state: _Direction, delay: float) -> None:
    try:
        while True:
            while state.pending >= state.window:
                state.changed.clear()
                await state.changed.wait()
            data = await reader.read(CHUNK)
            if not data:
                break
            state.items.append((time.monotonic() + delay, data))
            state.pending += len(data)
            state.changed.set()
    except (ConnectionError, OSError, asyncio.CancelledError):
        pass
    finally:
        state.eof = True
        state.changed.set()


async def _writer(writer: asyncio.StreamWriter, state: _Direction) -> bool:
    """Write what the reader queued, each chunk at its due time; False if the peer broke."""
    try:
        while True:
            if not state.items:
                if state.eof:
                    break
                state.changed.clear()
                await state.changed.wait()
                continue
            due, data = state.items[0]
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            state.items.popleft()
            writer.write(data)
            await writer.drain()
            state.pending -= len(data)
            state.changed.set()
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()
    except (ConnectionError, OSError):
        return False
    return True


_CONNECTIONS: set[asyncio.Task[None]] = set()


async def _handle(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    target: tuple[str, int],
    delay: float,
    window: int,
) -> None:
    me = asyncio.current_task()
    if me is not None:
        _CONNECTIONS.add(me)
    tasks: list[asyncio.Task[Any]] = []
    writers: list[asyncio.StreamWriter] = [client_writer]
    try:
        up_reader, up_writer = await asyncio.open_connection(*target)
        writers.append(up_writer)
        to_server, to_client = _Direction(window), _Direction(window)
        tasks = [
            asyncio.create_task(_reader(client_reader, to_server, delay)),
            asyncio.create_task(_reader(up_reader, to_client, delay)),
        ]
        pipes = [
            asyncio.create_task(_writer(up_writer, to_server)),
            asyncio.create_task(_writer(client_writer, to_client)),
        ]
        tasks += pipes
        pending = set(pipes)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if not all(task.result() for task in done):
                break  # one side is gone: drop the connection
    except (OSError, asyncio.CancelledError):
        pass
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in writers:
            with contextlib.suppress(Exception):
                w.close()
        if me is not None:
            _CONNECTIONS.discard(me)


async def _main(target: tuple[str, int], delay: float, window: int) -> None:
    server = await asyncio.start_server(
        lambda r, w: _handle(r, w, target, delay, window), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"url": f"http://127.0.0.1:{port}", "pid": os.getpid()}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the benchmark closes our stdin
    server.close()
    for task in list(_CONNECTIONS):
        task.cancel()
    await asyncio.gather(*_CONNECTIONS, return_exceptions=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="HOST:PORT on 127.0.0.0/8")
    parser.add_argument("--delay-ms", type=float, default=10.0, help="added delay each way")
    parser.add_argument("--window", type=int, default=32 << 20, help="bytes in flight per way")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    if not host.startswith("127."):
        parser.error("the target must be on the loopback network (127.0.0.0/8)")
    asyncio.run(_main((host, int(port)), args.delay_ms / 1000.0, args.window))
    return 0


if __name__ == "__main__":
    sys.exit(main())
