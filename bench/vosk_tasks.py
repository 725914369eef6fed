"""`vosk-transcriber` with its `--tasks` honoured: the baseline of a single-task run.

vosk 0.3.45 reads `--tasks` only in server mode; on files it decodes in
`multiprocessing.dummy.Pool()`, a thread per CPU, so `--tasks 1` still decodes two files
at once on a 2-core machine. This runs the same `vosk.transcriber.cli.main`, with that
pool sized by `--tasks` (as the flag says), and changes nothing else:

    python bench/vosk_tasks.py -m MODEL -i DIR -o OUT --tasks 1
"""

from __future__ import annotations

import argparse
import multiprocessing.dummy
import sys

_Pool = multiprocessing.dummy.Pool


def main() -> int:
    tasks = argparse.ArgumentParser(add_help=False)
    tasks.add_argument("--tasks", "-ts", type=int, default=10)
    wanted = tasks.parse_known_args()[0].tasks

    def pool(processes: int | None = None, *args, **kwargs):  # noqa: ANN002, ANN003
        return _Pool(processes or wanted, *args, **kwargs)

    # vosk.transcriber.transcriber does `from multiprocessing.dummy import Pool`
    multiprocessing.dummy.Pool = pool
    from vosk.transcriber.cli import main as vosk_main

    sys.argv[0] = "vosk-transcriber"
    return vosk_main() or 0


if __name__ == "__main__":
    sys.exit(main())
