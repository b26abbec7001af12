"""Every way a run ends leaves a complete report or none, the documented exit status, the
terminal as it was, and no process behind: the installed `calcml-debug`, in a real
pseudo-terminal (the interface) or with pipes (headless), as a person or a signal ends it.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pexpect
import pytest

from terminal import Terminal, command

ROOT = Path(__file__).resolve().parent.parent
RESTORED = (b"\x1b[?1049l", b"\x1b[?25h")   # alternate screen left, cursor shown


def model_file(folder: Path, body: str, name: str = "model.py") -> Path:
    """A model file: a small regression whose loss runs `body` (code in which `step` is the
    training step) before returning; `steps` large so the run is still going when the test acts."""
    path = folder / name
    path.write_text(textwrap.dedent('''\
        """A test model."""
        import os, sys, time
        import numpy as np
        import calcml as cm
        FLAG = {flag!r}
        model = cm.nn.Sequential(cm.nn.Linear(2, 4), cm.nn.Tanh(), cm.nn.Linear(4, 1))
        X, Y = np.random.default_rng(0).normal(size=(16, 2)), np.zeros((16, 1))
        steps = 10 ** 7
        batches = [0]
        def data():          # called once per training step (the loss also runs for curvature)
            batches[0] += 1
            return X, Y
        def loss(p, y):
            step = batches[0]
            if step == 3:
                open(FLAG, "w").close()
        {body}
            return ((p - y) ** 2).mean()
        ''').format(flag=str(folder / "trained.flag"), body=textwrap.indent(textwrap.dedent(body), "    ")))
    return path


def wait_for_file(path: Path, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > end:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)


def strict_report(path: Path) -> dict:
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")
    return json.loads(path.read_text(), parse_constant=refuse)


def children(pid: int) -> list:
    """The processes whose parent is `pid` (from the process table)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


def gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether `pid` has ended (exited or a zombie waiting to be reaped) within `timeout`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def term_factory():
    made = []

    def make(args, cwd=ROOT):
        term = Terminal(args, cwd=cwd, size=(120, 36))
        made.append(term)
        return term
    yield make
    for term in made:   # even when a test fails, leave no process behind
        term.close()
        for pid in term.workers:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass


def note_workers(term: Terminal) -> None:
    term.workers = children(term.child.pid)
    assert term.workers, "the training process was not found"


def running(term_factory, tmp_path: Path, body: str = "", at: str = r"RUNNING") -> tuple:
    """calcml-debug on a model running `body` each step, with a report to write: (the terminal,
    the report's path), once training is past step 3 and the screen shows `at`."""
    model = model_file(tmp_path, body)
    report = tmp_path / "R.json"
    term = term_factory([model, "--json", report])
    wait_for_file(tmp_path / "trained.flag")
    term.wait_for(at)
    note_workers(term)
    return term, report


def no_orphans(term: Terminal) -> None:
    for pid in term.workers:
        assert gone(pid), f"the training process {pid} outlived calcml-debug"


# -- the interface: every way out ----------------------------------------------------------

QUITS = {
    "q": lambda t: t.child.send("q"),
    "ctrl+q": lambda t: t.child.sendcontrol("q"),
    "ctrl+c": lambda t: t.child.sendcontrol("c"),
    "SIGINT": lambda t: t.child.kill(signal.SIGINT),
    "SIGTERM": lambda t: t.child.kill(signal.SIGTERM),
    "SIGHUP": lambda t: t.child.kill(signal.SIGHUP),
}
EXPECTED_STATUS = {"q": 0, "ctrl+q": 0, "ctrl+c": 0, "SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}


@pytest.mark.parametrize("how", list(QUITS))
def test_every_way_out_of_the_interface_leaves_a_whole_report(how, tmp_path, term_factory):
    term, report = running(term_factory, tmp_path)
    time.sleep(1.0)                       # some thousands of steps: a report of some size
    QUITS[how](term)
    status = term.finish()
    assert status == EXPECTED_STATUS[how], term.output()[-2000:]
    data = strict_report(report)
    assert data["steps"] > 3 and len(data["loss"]) == data["steps"]
    assert data["stopped"]["reason"] == "user" and data["state"] == "stopped"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    tail = term.raw[-4000:]
    assert all(code in tail for code in RESTORED), "the terminal was not restored"
    assert "Traceback" not in term.output()
    no_orphans(term)


def test_closing_the_terminal_writes_the_report_and_ends_the_worker(tmp_path, term_factory):
    term, report = running(term_factory, tmp_path)
    main_pid = term.child.pid
    term.hang_up()
    assert gone(main_pid, 30), "calcml-debug did not end when its terminal closed"
    no_orphans(term)
    data = strict_report(report)
    assert data["stopped"]["reason"] == "user" and data["steps"] > 3


def state_of(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_suspended_and_resumed_the_interface_comes_back(tmp_path, term_factory):
    """SIGTSTP (a shell's Ctrl+Z): the terminal restored and the process stopped; SIGCONT (fg):
    the interface drawn again, and q still ends it with a whole report."""
    term, report = running(term_factory, tmp_path)
    pid = term.child.pid
    before = len(term.raw)
    os.kill(pid, signal.SIGTSTP)
    end = time.monotonic() + 10
    while state_of(pid) != "T" and time.monotonic() < end:
        term.pump(0.1)
    assert state_of(pid) == "T"
    term.wait_for_bytes(RESTORED[0], since=before)      # the terminal restored before it stopped
    seen = len(term.raw)
    os.kill(pid, signal.SIGCONT)
    term.wait_for_bytes(b"\x1b[?1049h", since=seen)   # the interface's screen entered again
    term.wait_for(r"RUNNING")
    term.child.send("q")
    assert term.finish() == 0
    data = strict_report(report)
    assert data["stopped"]["reason"] == "user"
    no_orphans(term)


@pytest.mark.parametrize("how", ["q", "SIGTERM", "SIGHUP"])
def test_a_hung_step_still_ends_cleanly_with_a_report(how, tmp_path, term_factory):
    term, report = running(term_factory, tmp_path, "if step == 6:\n    time.sleep(3600)\n", at=r"step 5\b")
    time.sleep(0.5)                       # step 6 is now stuck in loss()
    started = time.monotonic()
    QUITS[how](term)
    status = term.finish()
    assert time.monotonic() - started < 10
    assert status == EXPECTED_STATUS[how]
    data = strict_report(report)
    assert data["steps"] == 5 and "still running" in data["stopped"]["detail"]
    assert all(code in term.raw[-4000:] for code in RESTORED)
    no_orphans(term)


def test_a_worker_that_dies_says_how_and_when(tmp_path, term_factory):
    model = model_file(tmp_path, "if step == 8:\n    os._exit(3)\n")
    report = tmp_path / "R.json"
    term = term_factory([model, "--json", report])
    term.wait_for(r"exited with status 3 at step 7")
    note_workers(term) if children(term.child.pid) else None
    term.child.send("q")
    status = term.finish()
    assert status == 2
    assert "the training process exited with status 3 at step 7" in term.output()
    assert not report.exists() and not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_training_error_is_shown_printed_after_and_exits_2(tmp_path, term_factory):
    model = model_file(tmp_path, "if step == 4:\n    undefined_name + 1\n")
    term = term_factory([model])
    term.wait_for(r"STOPPED \(error\)")
    term.wait_for(r"NameError")                       # on the main screen, not only in a pane
    term.wait_for(r"model\.py:\d+")                   # the user's own frame, file:line
    term.child.send("q")
    status = term.finish()
    assert status == 2
    after = term.output().rsplit("\x1b[?1049l", 1)[-1]   # what is printed once the interface closed
    assert "NameError" in after and "undefined_name" in after and "step 4" in after


def test_a_model_that_changes_folder_moves_nothing(tmp_path, term_factory):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    model = model_file(tmp_path, f"os.chdir({str(elsewhere)!r})\n")
    (tmp_path / "run").mkdir()
    term = term_factory([Path("..") / model.name, "--json", "R.json"], cwd=tmp_path / "run")
    wait_for_file(tmp_path / "trained.flag")
    term.wait_for(r"RUNNING")
    note_workers(term)
    term.child.send("q")
    assert term.finish() == 0
    assert strict_report(tmp_path / "run" / "R.json")["steps"] >= 3
    assert not (elsewhere / "R.json").exists()


def test_a_model_that_hangs_while_loading_shows_loading_and_q_quits(tmp_path, term_factory):
    model = tmp_path / "slow.py"
    model.write_text("import time\ntime.sleep(3600)\n")
    term = term_factory([model])
    term.wait_for(r"(?i)loading")
    note_workers(term)
    started = time.monotonic()
    term.child.send("q")
    assert term.finish() == 0
    assert time.monotonic() - started < 8
    no_orphans(term)


def test_files_in_the_current_folder_do_not_shadow_the_real_modules(tmp_path, term_factory):
    marker = tmp_path / "shadowed.flag"
    for name in ("numpy", "calcml", "textual", "msgspec", "sitecustomize", "json"):
        (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write('{name} ')\n")
    models = tmp_path / "models"
    models.mkdir()
    model = model_file(models, "")
    term = term_factory([model], cwd=tmp_path)
    wait_for_file(models / "trained.flag")
    term.wait_for(r"RUNNING")
    note_workers(term)
    term.child.send("q")
    assert term.finish() == 0
    assert not marker.exists(), marker.read_text()


def test_escape_sequences_from_the_model_never_reach_the_terminal(tmp_path, term_factory):
    model = tmp_path / "escapes.py"
    model.write_text(textwrap.dedent('''\
        """A title change: \x1b]0;pwned\x07 and a clear screen \x1b[2J"""
        import sys
        import numpy as np
        import calcml as cm
        print("output \\x1b]0;pwned-too\\x07 \\x9b2J")
        model = cm.nn.Linear(2, 1)
        setattr(model, "x\\x1b]0;name\\x07", cm.nn.Tanh())
        data = (np.zeros((4, 2)), np.zeros((4, 1)))
        def loss(p, y):
            raise RuntimeError("message \\x1b]0;error\\x07")
        '''))
    term = term_factory([model])
    term.wait_for(r"STOPPED")
    term.child.send("q")
    term.finish()
    for sequence in (b"\x1b]0;pwned", b"\x1b]0;name", b"\x1b]0;error", b"\x1b[2J", b"\x9b"):
        assert sequence not in term.raw, sequence
    assert "A title change" in term.output()    # the text around them is shown


def test_q_then_another_key_at_once_prints_nothing(tmp_path, term_factory):
    for key in "rhvb":
        term = term_factory([ROOT / "sample_models" / "xor_mlp.py"])
        term.wait_for(r"Linear")
        term.child.send("q" + key)
        assert term.finish() == 0
        assert "NoMatches" not in term.output() and "Traceback" not in term.output()


def test_an_internal_error_in_the_interface_gives_a_note_and_a_crash_file(tmp_path):
    # The interface, with one of its widgets made to fail, run as calcml-debug runs it.
    script = textwrap.dedent(f'''\
        import sys
        from calcml.tui.widgets import layers
        def broken(self, *a, **k):
            raise RuntimeError("a widget failed")
        layers.LayerTable.show = broken
        from calcml.tui.cli import main
        sys.exit(main([{str(ROOT / "sample_models" / "xor_mlp.py")!r}]))
        ''')
    env = dict(os.environ, TERM="xterm-256color", TMPDIR=str(tmp_path))
    child = pexpect.spawn(sys.executable, ["-c", script], dimensions=(36, 120), env=env)
    output = child.read().decode("utf-8", "replace")
    child.close()
    assert child.exitstatus == 1
    assert "internal error in the interface: RuntimeError: a widget failed" in output
    crash = [p for p in tmp_path.iterdir() if p.name.startswith("calcml-crash-")]
    assert len(crash) == 1 and oct(crash[0].stat().st_mode & 0o777) == "0o600"
    assert "a widget failed" in crash[0].read_text()
    assert "Traceback" not in output and "locals" not in output.lower()


# -- headless --------------------------------------------------------------------------

def headless(args, cwd=None):
    return subprocess.Popen([command(), *map(str, args), "--headless"], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("hangs", [False, True])
def test_a_signal_stops_a_headless_run_at_a_step_boundary_and_writes_the_report(signum, hangs, tmp_path):
    model = model_file(tmp_path, "if step == 6:\n    time.sleep(3600)\n" if hangs else "")
    report = tmp_path / "R.json"
    run = headless([model, "--json", report])
    try:
        wait_for_file(tmp_path / "trained.flag")
        time.sleep(0.5)
        run.send_signal(signum)
        out, err = run.communicate(timeout=20)
    finally:
        run.kill()
    assert run.returncode == 128 + signum, err
    data = strict_report(report)
    name = signal.Signals(signum).name
    assert data["stopped"]["reason"] == "user" and name in data["stopped"]["detail"]
    assert len(data["loss"]) == data["steps"] >= 3
    if hangs:
        assert data["steps"] == 5 and "still running" in data["stopped"]["detail"]
    assert "Traceback" not in out + err


EXITS = {
    "sys.exit(0)": "sys.exit(0)", "SystemExit(5)": "raise SystemExit(5)",
    "GeneratorExit": "raise GeneratorExit", "os._exit(3)": "os._exit(3)",
}


@pytest.mark.parametrize("how", list(EXITS))
def test_a_model_that_exits_inside_forward_is_a_model_error(how, tmp_path):
    model = model_file(tmp_path, f"if step == 4:\n    {EXITS[how]}\n")
    report = tmp_path / "R.json"
    run = headless([model, "--json", report])
    out, err = run.communicate(timeout=60)
    assert run.returncode == 2, out + err
    data = strict_report(report)
    assert data["stopped"]["reason"] == "error" and data["steps"] == 3
    assert "step 4" in data["stopped"]["detail"]
    assert "Traceback (most recent call last)" not in out + err


@pytest.mark.parametrize("how", list(EXITS))
def test_a_model_that_exits_while_loading_is_a_model_error(how, tmp_path):
    model = tmp_path / "exits.py"
    model.write_text(f"import os, sys\n{EXITS[how]}\n")
    for args in ([model, "--headless"], [model]):
        result = subprocess.run([command(), *map(str, args)], capture_output=True, text=True, timeout=60,
                                stdin=subprocess.DEVNULL)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "exits.py" in result.stderr and "Traceback (most recent call last)" not in result.stderr


def test_a_model_that_forks_has_one_report_writer(tmp_path):
    model = model_file(tmp_path, "if step == 4:\n    os.fork()\n")
    report = tmp_path / "R.json"
    model.write_text(model.read_text().replace("steps = 10 ** 7", "steps = 30"))
    run = headless([model, "--json", report])
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    data = strict_report(report)
    assert data["steps"] == 30 and data["state"] == "finished"
    assert out.count("report written to") == 1


@pytest.mark.parametrize("target", ["missing/R.json", "folder", "/dev/full", "readonly.json"])
@pytest.mark.parametrize("mode", ["--headless", None])
def test_an_unwritable_report_target_is_refused_before_the_first_step(target, mode, tmp_path):
    model = model_file(tmp_path, "")
    (tmp_path / "folder").mkdir()
    (tmp_path / "readonly.json").write_text("{}")
    (tmp_path / "readonly.json").chmod(0o444)
    args = [command(), str(model), "--json", target] + ([mode] if mode else [])
    result = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--json" in result.stderr and target.split("/")[0] in result.stderr
    assert not (tmp_path / "trained.flag").exists()
    assert (tmp_path / "readonly.json").read_text() == "{}"
    assert "Traceback" not in result.stderr and "bug in calcml" not in result.stderr


def test_a_regulariser_whose_select_raises_is_a_model_error(tmp_path):
    model = model_file(tmp_path, "")
    model.write_text(model.read_text() + textwrap.dedent('''\
        def pick(name, p):
            if batches[0] >= 4:
                raise KeyError(name)
            return True
        regularizer = cm.reg.L2(0.01, select=pick)
        '''))
    report = tmp_path / "R.json"
    run = headless([model, "--json", report])
    out, err = run.communicate(timeout=60)
    assert run.returncode == 2, out + err
    data = strict_report(report)
    assert data["stopped"]["reason"] == "error" and "regulariser" in data["stopped"]["detail"]
    assert "KeyError" in data["stopped"]["detail"] and "in pick" in data["stopped"]["detail"]
    assert "bug in calcml" not in out + err


@pytest.mark.parametrize("interface", [False, True])
def test_a_model_file_named_like_a_flag_runs(interface, tmp_path, term_factory):
    model = model_file(tmp_path, "", name="-model.py")
    model.write_text(model.read_text().replace("steps = 10 ** 7", "steps = 5"))
    if not interface:
        result = subprocess.run([command(), "--headless", "--", model.name], capture_output=True, text=True,
                                cwd=tmp_path, timeout=60, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr
        assert "finished after 5 steps" in result.stdout
        return
    term = term_factory(["--", model.name], cwd=tmp_path)
    term.wait_for(r"FINISHED")
    term.child.send("q")
    assert term.finish() == 0
