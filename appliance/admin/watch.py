"""The config watcher: watchfiles on the config file, the files it names and the frontend folder."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

from watchfiles import Change, awatch

from appliance.admin.reload import Reloader
from appliance.admin.watchset import WatchSet

__all__ = ["watch_config"]

log = logging.getLogger("portico.reload")

# A batch is handed over once the folders were quiet for STEP_MS (or after DEBOUNCE_MS at the latest):
# an editor's rename-and-write, a ConfigMap's symlink swap and a burst of writes arrive as one batch,
# and the content fingerprint drops batches that changed nothing.
STEP_MS = 250
DEBOUNCE_MS = 5000
# Then the watcher itself waits until no batch came for QUIET_S: a writer that stalls for more than a
# step (a loaded machine) still yields one reload of its final content.
QUIET_S = 1.0


def _filter(ws: WatchSet) -> Callable[[Change, str], bool]:
    interesting = ws.interesting()
    deep = tuple(d.rstrip(os.sep) + os.sep for d in ws.deep_dirs())

    def wanted(change: Change, path: str) -> bool:
        return path in interesting or path.startswith(deep)

    return wanted


async def _pump(dirs: tuple[str, ...], recursive: bool, ws: WatchSet, queue: asyncio.Queue[None]) -> None:
    async for _ in awatch(*dirs, watch_filter=_filter(ws), step=STEP_MS, debounce=DEBOUNCE_MS,
                          recursive=recursive, ignore_permission_denied=True):
        queue.put_nowait(None)


async def watch_config(reloader: Reloader, *, recheck_s: float = 1.0) -> None:
    """Reload when a watched file changes. Never returns; cancel the task to stop it.

    The watch set follows the running configuration: after a reload that names other files (a new
    CA bundle, another frontend folder), the watchers are restarted on the new set.
    """
    while True:
        ws = reloader.watch
        flat, deep = ws.flat_dirs(), ws.deep_dirs()
        if not flat and not deep:
            await asyncio.sleep(recheck_s * 2)
            continue
        queue: asyncio.Queue[None] = asyncio.Queue()
        tasks = []
        if flat:
            tasks.append(asyncio.create_task(_pump(flat, False, ws, queue), name="watch-files"))
        if deep:
            tasks.append(asyncio.create_task(_pump(deep, True, ws, queue), name="watch-folders"))
        log.debug("watching %s (and recursively %s)", ", ".join(flat), ", ".join(deep) or "nothing")
        try:
            # A change made while no watcher ran (start-up, a restart on a new watch set) is not missed:
            # the content is checked as if a batch had come, after the same quiet time, so a burst that
            # begins now still gives one reload of its final content.
            queue.put_nowait(None)
            while reloader.watch == ws and not any(t.done() for t in tasks):
                try:
                    await asyncio.wait_for(queue.get(), timeout=recheck_s)
                except TimeoutError:
                    continue
                while True:
                    try:
                        await asyncio.wait_for(queue.get(), timeout=QUIET_S)
                    except TimeoutError:
                        break
                try:
                    await reloader.reload("watch", only_if_changed=True)
                except Exception:
                    log.exception("configuration reload failed unexpectedly; the running one keeps serving")
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    log.warning("config watcher stopped (%s); restarting it", task.exception())
                    await asyncio.sleep(recheck_s)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
