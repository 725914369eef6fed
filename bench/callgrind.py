"""A process run under valgrind's callgrind, its instruction counts read between two points.

Callgrind counts the instructions a process executes (Ir): for the same binary and the
same inputs the same total, whatever else the machine runs, which CPU time on a shared
host is not. The process starts uninstrumented (`--instr-atstart=no`: valgrind's
slowdown alone, about 4x, so imports and start-up stay bearable); `instrument(True)`
switches counting on (`callgrind_control -i on`), `zero()` clears the counts and `dump()`
writes the counts since the last zero or dump to a new part file and answers its total.
Threads take turns on a futex (`--fair-sched=yes`), not on valgrind's default pipe,
whose reads and writes would show among the process's own system calls.

Callgrind counts instructions run in user space only: the kernel's side of the system
calls is not in the totals.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO

VALGRIND = shutil.which("valgrind") or "/usr/bin/valgrind"
CONTROL = shutil.which("callgrind_control") or "/usr/bin/callgrind_control"
# A callgrind_control request reaches the process through vgdb; a process under
# instrumentation is 20-100x slower than native, and a dump writes the whole profile.
CONTROL_S = 300.0
_TOTAL = re.compile(r"^(?:totals|summary):\s+(\d+)", re.MULTILINE)


def total_ir(text: str) -> int:
    """The instruction count of one callgrind dump: its `totals:` line (older valgrinds
    write `summary:`); the first event is Ir, the only one without a cache simulation."""
    found = _TOTAL.findall(text)
    if not found:
        raise ValueError("no totals: or summary: line in the callgrind output")
    return int(found[-1])


class Callgrind:
    """One process under callgrind, its dumps written next to `out` (`out.1`, `out.2`...)."""

    def __init__(self, argv: list[str], out: Path, log: Path, **popen: object) -> None:
        self.out, self.log = out, log
        self.seen: set[Path] = set()
        self.last = out  # the latest dump read
        self._stderr: IO[bytes] = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [VALGRIND, "--tool=callgrind", "--instr-atstart=no", "--cache-sim=no",
             "--branch-sim=no", "--fair-sched=yes", f"--callgrind-out-file={out}", *argv],
            stdout=subprocess.DEVNULL, stderr=self._stderr, **popen)  # type: ignore[call-overload]

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    async def control(self, *flags: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            CONTROL, *flags, str(self.pid), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), CONTROL_S)
        except TimeoutError:
            proc.kill()
            raise RuntimeError(f"callgrind_control {' '.join(flags)} {self.pid}: no answer "
                               f"in {CONTROL_S:.0f} s") from None
        text = out.decode(errors="replace")
        if proc.returncode or "Error" in text or "No active" in text:
            raise RuntimeError(f"callgrind_control {' '.join(flags)} {self.pid}: {text}")
        return text

    async def instrument(self, on: bool) -> None:
        await self.control("-i", "on" if on else "off")

    async def zero(self) -> None:
        self.seen = self._parts()
        await self.control("-z")

    async def dump(self) -> int:
        """Write the counts since the last zero or dump (and clear them); their total."""
        self.seen |= self._parts()
        await self.control("-d")
        deadline = time.monotonic() + CONTROL_S
        while time.monotonic() < deadline:
            for part in sorted(self._parts() - self.seen):
                with contextlib.suppress(ValueError):  # still being written
                    ir = total_ir(part.read_text(errors="replace"))
                    self.seen.add(part)
                    self.last = part
                    return ir
            await asyncio.sleep(0.2)
        raise RuntimeError(f"no new callgrind dump of {self.pid} next to {self.out}")

    def _parts(self) -> set[Path]:
        return set(self.out.parent.glob(self.out.name + "*"))

    def stop(self, timeout: float = 120.0) -> None:
        """Terminate it and wait (its last dump, at exit, is written then and not read)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._stderr.close()

    def complaints(self) -> list[str]:
        """Its warnings, errors and tracebacks (valgrind's own `==pid==` lines left out)."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [line for line in lines if not line.startswith("==")
                and re.search(r"WARNING|ERROR|Traceback|[Tt]ime(d )?out", line)]
