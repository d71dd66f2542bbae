"""Progress for long work: a tqdm bar on a terminal, sparse log lines elsewhere."""
import time

__all__ = ["progress"]


def progress(items, desc="", total=None, enabled=False, log=None, every_seconds=5.0):
    if total is None:
        try:
            total = len(items)
        except TypeError:
            total = None
    if enabled:
        from tqdm import tqdm
        yield from tqdm(items, desc=desc, total=total, leave=False)
        return
    last = time.monotonic()
    for n, item in enumerate(items, 1):
        yield item
        now = time.monotonic()
        if log is not None and (now - last >= every_seconds or n == total):
            log.info("%s: %d/%s", desc or "progress", n, total if total is not None else "?")
            last = now
