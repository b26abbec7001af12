"""? help: every line fits 80 columns unwrapped, a screen too short for it says it scrolls, and
scrolling reaches its end; what it looks like at 80x24 and 160x48."""
from rich.text import Text

from calcml.tui.app import DebuggerApp
from calcml.tui.screens.help import HELP, HelpScreen
from tui_helpers import local, run, screen_text, settle


def test_every_help_line_fits_inside_the_80_column_box():
    widths = [Text.from_markup(line).cell_len for line in HELP.splitlines()]
    assert max(widths) <= 72       # 80 less the border, the padding and the scrollbar


def test_at_80x24_help_says_it_scrolls_and_scrolls_to_its_end():
    async def body():
        app = DebuggerApp(local("xor_mlp.py", steps=2))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("question_mark")
            await settle(pilot, lambda: isinstance(app.screen, HelpScreen))
            text = screen_text(app)
            assert "↑ ↓ scroll" in text and "press escape or ? to close" not in text
            for _ in range(40):
                await pilot.press("down")
            await settle(pilot, lambda: "press escape or ? to close" in screen_text(app))
            await pilot.press("escape")
            await settle(pilot, lambda: not isinstance(app.screen, HelpScreen))
    run(body())


def test_snapshot_help_80x24(snap_compare):
    assert snap_compare(DebuggerApp(local("xor_mlp.py", steps=2)), press=["question_mark"], terminal_size=(80, 24))


def test_snapshot_help_160x48(snap_compare):
    assert snap_compare(DebuggerApp(local("xor_mlp.py", steps=2)), press=["question_mark"], terminal_size=(160, 48))
