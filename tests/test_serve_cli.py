"""`calcml-debug MODEL.py --serve` and `calcml-debug --attach ADDRESS`, installed, as a person
runs them: the served run in one process, the interface in a real pseudo-terminal in another;
q detaches and the run goes on; a second attach sees it further on; pausing from the interface
pauses the served run."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pexpect
import pytest

import terminal

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def folder():
    path = tempfile.mkdtemp(prefix="cm", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def serve(folder: str, *args) -> tuple:
    address = os.path.join(folder, "run.sock")
    out = open(os.path.join(folder, "served.out"), "w+")
    process = subprocess.Popen([terminal.command(), "sample_models/xor_mlp.py", "--steps", "10000000",
                                "--serve-address", address, *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    end = time.monotonic() + 60
    while not os.path.exists(address + ".token"):
        assert process.poll() is None, open(out.name).read()
        assert time.monotonic() < end, "the served run did not start"
        time.sleep(0.05)
    return process, address, out


def served_step(out) -> int:
    out.flush()
    steps = [int(line.split()[1].split("/")[0]) for line in open(out.name).read().replace("\r", "\n").splitlines()
             if line.startswith("step ")]
    return steps[-1] if steps else 0


def test_attach_pause_detach_and_attach_again_in_a_real_terminal(folder):
    process, address, out = serve(folder)
    try:
        term = terminal.Terminal(["--attach", address])
        try:
            term.wait_for(r"⇄ " + address.replace(".", r"\."))   # where it is attached, in the header
            term.wait_for(r"Linear")
            term.wait_for(r"RUNNING")
            term.wait_for(r"q detach")                 # q leaves the run going, and says so
            term.child.send(" ")                       # pause: the served run pauses
            term.wait_for(r"PAUSED")
            paused_at = int(term.wait_for(r"step (\d+)").group(1))
            term.child.send("n")                       # one step of the served run
            term.wait_for(rf"step {paused_at + 1}\b")
            term.child.send("q")                       # detach
            term.child.expect(pexpect.EOF, timeout=10)
            term.raw += term.child.before or b""
        finally:
            term.child.close(force=True)
        assert term.child.exitstatus == 0
        assert b"detached from" in term.raw and b"the run goes on" in term.raw
        assert process.poll() is None                  # still there, paused
        again = terminal.Terminal(["--attach", address])
        try:
            again.wait_for(r"PAUSED")
            again.wait_for(rf"step {paused_at + 1}\b")     # the same run, where it was left
            again.child.send(" ")                          # run on
            again.wait_for(r"RUNNING")
            again.child.send("q")
            again.child.expect(pexpect.EOF, timeout=10)
        finally:
            again.child.close(force=True)
        end = time.monotonic() + 30
        while served_step(out) <= paused_at + 1:
            assert time.monotonic() < end, "the served run did not run on after the detach"
            time.sleep(0.1)
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(30)
    text = open(out.name).read()
    assert f"serving at {address}" in text and "stopped" in text
    assert process.returncode == 128 + 15                  # SIGTERM, as headless runs end on it


def test_attach_to_nothing_and_attach_with_a_model_file_exit_2(folder):
    nothing = subprocess.run([terminal.command(), "--attach", os.path.join(folder, "none.sock")],
                             capture_output=True, text=True, timeout=60)
    assert nothing.returncode == 2 and "no run is serving at" in nothing.stderr
    assert "Traceback" not in nothing.stderr
    both = subprocess.run([terminal.command(), "sample_models/xor_mlp.py", "--attach", "x.sock"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert both.returncode == 2 and "takes no model file" in both.stderr
    public = subprocess.run([terminal.command(), "sample_models/xor_mlp.py", "--serve-address", "0.0.0.0:7707"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert public.returncode == 2 and "--serve-public" in public.stderr


def test_record_a_headless_run_and_open_it_in_a_real_terminal(folder):
    path = os.path.join(folder, "run.calcml")
    made = subprocess.run([terminal.command(), "sample_models/deep_sigmoid.py", "--headless", "--steps", "60",
                           "--record", path], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert made.returncode == 0, made.stderr
    assert f"recording to {path}" in made.stdout
    term = terminal.Terminal(["--open", path])
    try:
        term.wait_for(r"replay")
        term.wait_for(r"step 60\b")                   # it opens at the last recorded step
        term.wait_for(r"vanishing")                   # the warnings recorded
        term.child.send("p")                          # back one recorded step
        term.wait_for(r"step 59\b")
        term.child.send("[")                          # a recording cannot be changed
        term.wait_for(r"recording")
        term.child.send("q")
        term.child.expect(pexpect.EOF, timeout=10)
    finally:
        term.child.close(force=True)
    assert term.child.exitstatus == 0


def test_the_interface_records_too(folder):
    path = os.path.join(folder, "ui.calcml")
    term = terminal.Terminal(["sample_models/xor_mlp.py", "--record", path])
    try:
        term.wait_for(r"FINISHED", timeout=60)
        term.child.send("q")
        term.child.expect(pexpect.EOF, timeout=30)
    finally:
        term.child.close(force=True)
    assert term.child.exitstatus == 0
    from calcml.debug.recording import read_recording
    recording = read_recording(path)
    assert recording.snapshots and recording.ended and not recording.cut
    assert recording.snapshots[-1].step == 1500 or recording.snapshots[-1].step > 100


def test_a_recording_that_cannot_be_written_is_refused_before_the_run(folder):
    nowhere = subprocess.run([terminal.command(), "sample_models/xor_mlp.py", "--headless", "--record",
                              os.path.join(folder, "no", "such", "folder", "run.calcml")],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert nowhere.returncode == 2 and "--record" in nowhere.stderr and "step 1" not in nowhere.stdout
