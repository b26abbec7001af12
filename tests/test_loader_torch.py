"""A PyTorch model file where PyTorch is not installed: one line saying how to install it, and
exit 2, with the interface or headless (torch is hidden from the import system to show it)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from calcml.debug import ModelFileError, load_model_file

MODEL = textwrap.dedent('''\
    """A torch model."""
    import torch
    model = torch.nn.Linear(2, 1)
    loss = torch.nn.functional.mse_loss
    data = (torch.zeros(4, 2), torch.zeros(4, 1))
    ''')


def test_a_torch_model_without_torch_says_how_to_install_it(tmp_path, monkeypatch):
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    monkeypatch.setitem(sys.modules, "torch", None)     # `import torch` now fails as if not installed
    with pytest.raises(ModelFileError) as caught:
        load_model_file(str(path))
    message = str(caught.value)
    assert "PyTorch" in message and 'pip install -e ".[torch]"' in message
    assert "\n" not in message and "Traceback" not in message


def test_calcml_debug_exits_2_with_that_line(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    script = ("import sys; sys.modules['torch'] = None\n"
              "from calcml.tui.cli import main\n"
              f"sys.exit(main([{str(path)!r}, '--headless']))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and 'pip install -e ".[torch]"' in lines[0], done.stderr
