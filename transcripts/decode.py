"""One recording to a stored-ready result, run inside a worker process.

Decoding, redaction and complaint detection all happen here, in the pool process: the
event loop never decodes, and the raw (unredacted) text never leaves this process.
Everything returned is plain data, so it pickles back to the parent whatever happens.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

log = logging.getLogger(__name__)

# How often a decoder process looks whether the node that started it is still there.
PARENT_CHECK_S = 0.2


@dataclass(frozen=True)
class DecodeRequest:
    path: str
    model: str
    agent_channel: int = 0
    customer_channel: int = 1
    language: str | None = None
    patterns: tuple[str, ...] = ()
    max_bytes: int | None = None  # limits on the recording (transcripts.audio.Limits)
    max_seconds: float | None = None


@dataclass(frozen=True)
class DecodeResult:
    utterances: list[dict[str, Any]] = field(default_factory=list)
    duration_s: float = 0.0
    detection: dict[str, Any] | None = None
    error: str | None = None  # "code: reason" when the audio itself is unusable


def decode_recording(request: DecodeRequest) -> DecodeResult:
    from transcripts.asr import transcribe_file
    from transcripts.audio import Limits
    from transcripts.complaint_detector import detect_complaint
    from transcripts.exceptions import BadAudio
    from transcripts.redaction import redact_transcript

    limits = None
    if request.max_bytes is not None and request.max_seconds is not None:
        limits = Limits(request.max_bytes, request.max_seconds)
    try:
        transcript = transcribe_file(request.path, request.model,
                                     agent_channel=request.agent_channel,
                                     customer_channel=request.customer_channel, limits=limits)
    except BadAudio as e:
        return DecodeResult(error=f"{e.code}: {e.reason}")
    utterances = [u.to_dict() for u in redact_transcript(transcript, request.patterns)]
    detection = detect_complaint(utterances, request.language).to_dict()
    return DecodeResult(utterances, transcript.duration, detection)


def _warm_up(model: str, parent: int) -> None:
    """Pool initializer: load the model (and the detector's lexicons) once per process.

    Ctrl-C reaches the whole process group: the decoder ignores it and the parent shuts
    the pool down (a decode under way finishes, its job stays pending), rather than a
    KeyboardInterrupt traceback from the middle of Kaldi."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent)
    from transcripts.asr import load_model
    from transcripts.complaint_detector import default_detector

    load_model(model)
    default_detector()
    log.info("decoder process %d ready", os.getpid())


def process_pool(model: str, processes: int) -> Executor:
    # spawn, not fork: the parent runs an event loop and driver threads that must not be copied.
    return ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn"),
                               initializer=_warm_up, initargs=(model, os.getpid()))


def die_with_parent(parent: int, interval: float = PARENT_CHECK_S) -> None:
    """End this process when `parent` is gone, however it went.

    A decoder waits for work on a pipe it holds both ends of, so it never sees its node
    die: a node killed with SIGKILL (the OOM killer, `kill -9`, a container stopped hard)
    would leave its decoders, each holding a speech model in memory, for ever. A daemon
    thread watches for the process being handed to another parent and exits then. (Not
    prctl's PR_SET_PDEATHSIG: that follows the parent *thread* that started the process,
    and a pool may start one from a thread that ends before the node does.)"""
    if os.getppid() != parent:  # gone already, while this process started
        os._exit(0)
    threading.Thread(target=_watch_parent, args=(parent, interval), name="parent-watch",
                     daemon=True).start()


def _watch_parent(parent: int, interval: float) -> None:
    while os.getppid() == parent:
        time.sleep(interval)
    log.warning("decoder process %d: its parent %d is gone; exiting", os.getpid(), parent)
    os._exit(0)  # at once: no pool shutdown to wait for, nobody to answer
