"""What a node's memory holds, sampled while a benchmark runs (bench/README.md, "One SQL
text per statement shape"). Not part of the service: it is loaded only by processes
started with this directory on PYTHONPATH and MEMPROBE_DIR set, and only in those with
CALLCENTER_DATABASE_URL (the nodes a bench starts, not the bench itself):

    MEMPROBE_DIR=/tmp/probe PYTHONPATH=$PWD:$PWD/bench/memprobe \\
        .venv/bin/python bench/soak_bench.py ...

Every MEMPROBE_EVERY seconds (60) each node writes <pid>-<n>.json: its resident memory,
glibc's heap (mallinfo2: arena, in use, free), the live objects by type (the frozen
heap included), each engine's compiled-statement cache size, and each pooled asyncpg
connection's prepared statements with their SQL texts. MEMPROBE_TRACEMALLOC=1 also
traces Python allocations from MEMPROBE_TRACE_START seconds on (the start-up is too slow
to trace on a loaded host) and dumps a tracemalloc snapshot each time (<pid>-<n>.snap:
compare two with `Snapshot.load(b).compare_to(Snapshot.load(a), "lineno")`).
"""

from __future__ import annotations

import os

_DIR = os.environ.get("MEMPROBE_DIR")

if _DIR and os.environ.get("CALLCENTER_DATABASE_URL"):
    import ctypes
    import gc
    import json
    import sys
    import threading
    import time
    import tracemalloc
    from collections import Counter
    from typing import Any

    class _Mallinfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    _libc = ctypes.CDLL("libc.so.6")
    _libc.mallinfo2.restype = _Mallinfo2

    def _rss_mb() -> float:
        with open(f"/proc/{os.getpid()}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def _heap_mb() -> dict[str, float]:
        info = _libc.mallinfo2()
        return {k: getattr(info, k) / 2**20 for k in ("arena", "hblkhd", "uordblks", "fordblks")}

    def _sample(n: int) -> None:
        base = os.path.join(str(_DIR), f"{os.getpid()}-{n:03d}")
        info: dict[str, Any] = {"t": time.time(), "rss_mb": _rss_mb(), "malloc_mb": _heap_mb()}
        if tracemalloc.is_tracing():
            info["traced_mb"] = tracemalloc.get_traced_memory()[0] / 2**20
            tracemalloc.take_snapshot().dump(base + ".snap")
        gc.unfreeze()  # the node freezes its heap (core/gctune.py): see all of it
        try:
            objects = gc.get_objects()
        finally:
            gc.freeze()
        prepared: list[list[str]] = []
        compiled: list[int] = []
        for o in objects:
            kind = type(o).__name__
            if kind == "AsyncAdapt_asyncpg_connection":
                cache = getattr(o, "_prepared_statement_cache", None)
                prepared.append(list(cache.keys()) if cache is not None else [])
            elif kind == "Engine" and getattr(o, "_compiled_cache", None) is not None:
                compiled.append(len(o._compiled_cache))
        texts = Counter(t for conn in prepared for t in conn)
        info.update(
            objects=len(objects),
            types=Counter(type(o).__qualname__ for o in objects).most_common(60),
            compiled_cache=compiled, prepared_per_conn=[len(c) for c in prepared],
            prepared_distinct=len(texts),
            prepared_texts=[(t[:160], len(t), k) for t, k in texts.most_common()])
        del objects
        with open(base + ".json", "w") as out:
            json.dump(info, out)

    def _run() -> None:
        time.sleep(float(os.environ.get("MEMPROBE_TRACE_START", "0")))
        if os.environ.get("MEMPROBE_TRACEMALLOC") == "1":
            tracemalloc.start(10)
        every = float(os.environ.get("MEMPROBE_EVERY", "60"))
        n = 0
        while True:
            time.sleep(every)
            try:
                _sample(n)
            except Exception as e:  # a probe, not the node: say so and go on
                print(f"memprobe: {e!r}", file=sys.stderr, flush=True)
            n += 1

    threading.Thread(target=_run, name="memprobe", daemon=True).start()
