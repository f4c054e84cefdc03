"""Hot reload: versions added, changed or removed in the model repository are picked up while serving.

Every VAE_RELOAD_INTERVAL_S a task on the event loop stats the repository's files (in a worker thread);
only when their signature differs from the serving snapshot's is the next snapshot built, in a worker thread,
beside the serving one (engine.repository.ModelRepository.reloaded), then swapped into the data plane in one
assignment. The data plane reads its `repository` once per request, so a request in flight finishes on the
engine it resolved. A version whose new files fail to load keeps its older load serving, and is
tried again only when its files change again (a half-copied model is picked up once the copy completes).
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable

import anyio
from anyio import to_thread

from service.dataplane.dataplane import DataPlane
from service.engine.repository import ReloadReport, scan_versions
from service.errors import RepositoryUnreadable

log = logging.getLogger(__name__)


class RepositoryReloader:
    def __init__(self, dataplane: DataPlane, interval_s: float, on_swap: Callable[[], None] | None = None):
        """on_swap: called after a reload that changed what is served (the old versions are on their way out)."""
        self.dataplane, self.interval_s, self.on_swap = dataplane, interval_s, on_swap
        self._lock = anyio.Lock()  # one reload at a time: the poller's and POST /admin/reload's
        self._task: asyncio.Task | None = None

    async def reload(self) -> ReloadReport:
        """Load what changed since the serving snapshot was read and swap the result in; report what changed."""
        async with self._lock:
            following, report = await to_thread.run_sync(self.dataplane.repository.reloaded)
            self.dataplane.repository = following  # the swap: one assignment, seen by every later request
        if report.anything_changed:
            if self.on_swap is not None:
                self.on_swap()
            log.info("models reloaded: added %s, changed %s, removed %s, failed %s", report.added, report.changed,
                     report.removed, sorted(report.failed))
        return report

    async def poll_once(self) -> ReloadReport | None:
        """Reload when the repository's files differ from the serving snapshot's; None when they do not."""
        found = await to_thread.run_sync(scan_versions, self.dataplane.repository.root)
        if found == self.dataplane.repository.signatures:
            return None
        return await self.reload()

    async def _poll(self) -> None:
        unreadable = False
        while True:
            await anyio.sleep(self.interval_s)
            try:
                await self.poll_once()
                unreadable = False
            except RepositoryUnreadable as exc:
                if not unreadable:
                    log.warning("model reload skipped: %s", exc)
                unreadable = True
            except Exception:  # noqa: BLE001 - the poller must outlive any one failed scan
                log.exception("model reload failed; the models loaded before keep serving")

    def start(self) -> None:
        """Poll in the background (nothing when the interval is 0)."""
        if self.interval_s > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll(), name="model-reload")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
