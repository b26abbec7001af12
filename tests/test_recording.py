"""Recording a run to a file (calcml.debug.recording): what is kept, what reads back, and that a
file cut off anywhere (a crash) still opens up to its last complete line."""
from __future__ import annotations

import math
import os
import random

import pytest
from msgspec.structs import replace

from calcml.debug import Session, load_model_file, wire
from calcml.debug.recording import (DENSE_STEPS, FORMAT, HISTOGRAM_SPACING, Recorder, RecordingError,
                                    header, read_recording, spacing)
from recordings import SAMPLES, record


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def lines_of(path) -> list:
    with open(path, "rb") as f:
        return f.read().split(b"\n")


def test_every_frame_sent_reads_back_as_it_was_sent(tmp_path):
    path = tmp_path / "run.calcml"
    sent = []
    recorder = record(path, "xor_mlp.py", steps=60, sent=sent)
    assert recorder.error is None
    recording = read_recording(str(path))
    assert recording.header.format == FORMAT and recording.ended and not recording.cut and recording.bad_lines == 0
    snapshots = [(m, d) for m, d in sent if m["type"] == "snapshot"]
    assert len(snapshots) == 61 == len(recording.snapshots)   # a short run: every one kept
    for i, (message, data) in enumerate(snapshots):
        back = recording.snapshot(i)
        assert wire.encode({"type": "snapshot", "snapshot": back}) == data
        original = message["snapshot"]
        assert (back.step, back.loss) == (original.step, original.loss) or math.isnan(original.loss)
        assert [p.grad_norm for layer in back.layers for p in layer.params.values()] == \
            [p.grad_norm for layer in original.layers for p in layer.params.values()]
    others = [m["type"] for m, _ in sent if m["type"] not in ("snapshot", "history")]
    assert [type(f).__struct_config__.tag for _, f in recording.frames] == others
    # the history: the first one, and the last held back until the state changed
    history = recording.history(len(recording.histories) - 1)
    last = [d for m, d in sent if m["type"] == "history"][-1]
    assert wire.encode({"type": "history", "series": history}) == wire.encode(wire.decode_message(last))
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_spacing_doubles_with_the_run():
    assert [spacing(s) for s in (0, 999, 1000, 1999, 2000, 3999, 4000, 8000, 16000)] == [1, 1, 2, 2, 4, 4, 8, 16, 32]


def fake_frames(count: int, warn_every: int = 97, histograms_every: int = 100):
    """`count` snapshot frames of steps 0..count-1 built from a real snapshot: some with a
    warning, some with histograms."""
    session = Session(load_model_file(str(SAMPLES / "xor_mlp.py")))
    first = session.initial_snapshot()
    from calcml.debug.diagnostics import WarningEvent
    event = WarningEvent(0, "dead_relu", "fc1", None, 0.9, 0.5, "a warning")
    plain = replace(first, state="running", histograms=None, data_view=None, warnings=())
    for step in range(count):
        snap = replace(plain, step=step)
        if step % warn_every == 5:
            snap = replace(snap, warnings=(replace(event, step=step),))
        if step % histograms_every == 0:
            snap = replace(snap, histograms=first.histograms)
        message = {"type": "snapshot", "snapshot": snap}
        yield message, wire.encode(message)


def test_thinning_keeps_a_long_run_logarithmic_and_every_warning(tmp_path):
    path = tmp_path / "long.calcml"
    recorder = Recorder(str(path), clock=Clock())
    total = 20_000
    for message, data in fake_frames(total):
        recorder.write(message, data)
    recorder.close()
    steps = [s.step for s in read_recording(str(path)).snapshots]
    warned = [s for s in range(total) if s % 97 == 5]
    # the documented bound: every step below 1000, then 500 for each doubling (plus the warnings)
    doublings = math.ceil(math.log2(total / DENSE_STEPS))
    assert len(steps) <= DENSE_STEPS + 500 * doublings + len(warned) + total // (HISTOGRAM_SPACING * 2)
    assert len(steps) >= DENSE_STEPS + 500 * (doublings - 1)
    assert set(warned) <= set(steps)
    assert steps[:DENSE_STEPS] == list(range(DENSE_STEPS))
    for a, b in zip(steps, steps[1:]):   # never a gap wider than the spacing there
        assert b - a <= spacing(b)
    # twice as long a run: about 500 more snapshots (and its warnings), not twice as many
    path2 = tmp_path / "longer.calcml"
    recorder = Recorder(str(path2), clock=Clock())
    for message, data in fake_frames(2 * total):
        recorder.write(message, data)
    recorder.close()
    longer = read_recording(str(path2)).snapshots
    more_warnings = len([s for s in range(total, 2 * total) if s % 97 == 5])
    assert len(longer) - len(steps) <= 500 + more_warnings + total // (HISTOGRAM_SPACING * 32) + 2
    # histograms: kept at least every HISTOGRAM_SPACING spacings
    kept = [s.step for s in longer if s.histograms]
    for a, b in zip(kept, kept[1:]):
        assert b - a <= HISTOGRAM_SPACING * spacing(b) + 100


def test_history_at_most_every_ten_seconds_and_the_latest_at_the_end(tmp_path):
    clock = Clock()
    path = tmp_path / "h.calcml"
    recorder = Recorder(str(path), clock=clock)
    sent = []
    for k in range(100):
        frame = {"type": "history", "series": {"step": list(range(k + 1)), "loss": [1.0] * (k + 1)}}
        data = wire.encode(frame)
        sent.append(data)
        recorder.write(frame, data)
        clock.now += 1.0
    recorder.close()
    recording = read_recording(str(path))
    assert 9 <= len(recording.histories) <= 12
    assert wire.encode({"type": "history", "series": recording.history(len(recording.histories) - 1)}) == \
        wire.encode(wire.decode_message(sent[-1]))


def test_writes_are_flushed_about_once_a_second_and_at_a_state_change(tmp_path):
    clock = Clock()
    path = tmp_path / "f.calcml"
    recorder = Recorder(str(path), clock=clock)
    size = os.path.getsize(path)
    assert size == len(header()) + 1        # the header, at once
    (first, data), (second, data2) = fake_frames(2)
    recorder.write(first, data)
    assert os.path.getsize(path) == size    # buffered
    clock.now += 1.5
    recorder.write(second, data2)
    assert os.path.getsize(path) == size + len(data) + len(data2) + 2
    state = {"type": "state", "state": "paused", "stop": None}
    recorder.write(state, wire.encode(state))
    assert len(read_recording(str(path)).frames) == 1
    recorder.close()
    recorder.close()                         # again: nothing


def test_past_max_bytes_only_what_must_be_seen_is_kept(tmp_path):
    path = tmp_path / "cap.calcml"
    recorder = Recorder(str(path), max_bytes=200_000, clock=Clock())
    for message, data in fake_frames(3000):
        recorder.write(message, data)
    state = {"type": "state", "state": "finished", "stop": None}
    recorder.write(state, wire.encode(state))
    recorder.close()
    assert recorder.full
    recording = read_recording(str(path))
    notes = [(after, f) for after, f in recording.frames if isinstance(f, wire.LogFrame)]
    assert len(notes) == 1 and "limit of 200000 bytes" in notes[0][1].text
    after = notes[0][0]
    assert all(s.warnings for s in recording.snapshots[after + 1:])
    assert [s.step for s in recording.snapshots[after:] if s.warnings][-1] == max(
        s for s in range(3000) if s % 97 == 5)
    assert isinstance(recording.frames[-1][1], wire.StateFrame)
    assert os.path.getsize(path) < 200_000 + 40 * (len(next(fake_frames(1))[1]) + 200)


def test_an_error_writing_ends_the_recording_and_never_reaches_the_training(tmp_path):
    recorder = Recorder(str(tmp_path / "e.calcml"), clock=Clock())

    class Full:
        def write(self, data):
            raise OSError(28, "No space left on device")

        def flush(self):
            pass

        def close(self):
            pass
    recorder._file = Full()
    message, data = next(fake_frames(1))
    recorder.write(message, data)
    assert isinstance(recorder.error, OSError) and "No space" in str(recorder.error)
    recorder.write(message, data)
    recorder.close()


def test_a_recording_cut_at_any_byte_opens_up_to_its_last_complete_line(tmp_path):
    path = tmp_path / "run.calcml"
    record(path, "xor_mlp.py", steps=20)
    data = path.read_bytes()
    ends = [i for i, b in enumerate(data) if b == 0x0A]   # each line's newline
    kinds = [wire.decode_message(line).__struct_config__.tag for line in data.split(b"\n")[:-1]]
    head = len(header()) + 1
    rng = random.Random(20240611)
    cuts = sorted(set(rng.sample(range(1, len(data)), 150)) | set(range(1, head + 2)) |
                  {e for e in ends} | {e + 1 for e in ends})
    cut_file = tmp_path / "cut.calcml"
    for cut in cuts:
        cut_file.write_bytes(data[:cut])
        recording = read_recording(str(cut_file))
        complete = [k for k, e in zip(kinds, ends) if e < cut]
        assert len(recording.snapshots) == complete.count("snapshot"), cut
        assert len(recording.histories) == complete.count("history"), cut
        assert recording.cut == (cut not in {e + 1 for e in ends}), cut
        assert recording.bad_lines == 0
        assert recording.ended == ("bye" in complete)
        if recording.snapshots:   # the last one reads whole
            recording.snapshot(len(recording.snapshots) - 1)
        recording.close()


def test_garbage_lines_are_skipped_and_counted(tmp_path):
    path = tmp_path / "run.calcml"
    record(path, "xor_mlp.py", steps=5)
    lines = lines_of(path)
    lines[3:3] = [b"not json at all", b'{"type": "snapshot", "snapshot": {"step": "x"}}', b"[" * 100]
    path.write_bytes(b"\n".join(lines))
    recording = read_recording(str(path))
    assert recording.bad_lines == 3 and len(recording.snapshots) == 6 and not recording.cut


def test_files_that_are_not_recordings_are_refused_saying_why(tmp_path):
    with pytest.raises(RecordingError, match="no such file"):
        read_recording(str(tmp_path / "missing.calcml"))
    (tmp_path / "empty.calcml").write_bytes(b"")
    with pytest.raises(RecordingError, match="is empty"):
        read_recording(str(tmp_path / "empty.calcml"))
    (tmp_path / "model.py").write_text("import calcml\nprint('hello')\n")
    with pytest.raises(RecordingError, match=r"model.py is not a calcml recording \(its first line is not a "
                                             r"recording header\)"):
        read_recording(str(tmp_path / "model.py"))
    snapshot_first = tmp_path / "frames.calcml"
    snapshot_first.write_bytes(wire.encode({"type": "bye"}) + b"\n")
    with pytest.raises(RecordingError, match="not a calcml recording"):
        read_recording(str(snapshot_first))
    other = tmp_path / "other.calcml"
    other.write_bytes(wire.encode({"type": "recording", "format": "calcml.recording/9"}) + b"\n")
    with pytest.raises(RecordingError, match="another format"):
        read_recording(str(other))
    with pytest.raises(RecordingError, match="folder"):
        read_recording(str(tmp_path))


def test_a_header_alone_opens_with_no_steps(tmp_path):
    path = tmp_path / "new.calcml"
    Recorder(str(path)).close()
    recording = read_recording(str(path))
    assert recording.snapshots == [] and recording.frames == [] and not recording.cut and not recording.ended
