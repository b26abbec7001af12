"""? : the keys, and what the numbers mean."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """\
[b]Keys[/b]
  space   pause / resume          n   one training step (paused)
  s       step into: one iteration op by op (paused)
  c       continue                b   breakpoints
  t       train on: a finished run trains as many steps again (100+)
  ctrl+r  restart from step 0, paused, same seed; keeps your lr,
          regulariser and breakpoints
  enter   inspect the selected layer: the chain rule down to it
  r       regularisation view: none / L1 / L2 and λ, live
  h       curvature view: λ_max, the lr edge, the Hessian diagonal,
          Newton's state
  v       Bayesian view: the ELBO's terms, posterior σ, gradient
          noise, HMC's state
  d       data view: the training points and the model's decision
          surface (2 inputs) or fitted curve (1 input)
  [ ]     halve / double the learning rate
  g       plots (on narrow terminals)   ctrl+p  command palette
  l       loss axis: auto (log when the loss spans 100×), log, linear
  ?       this help                q   quit, from every screen
  escape  back to the main screen, from every view    (ctrl+q quits too)
  --attach  q detaches: the served run goes on
  --open    a recording: n / p a recorded step on / back, space plays

[b]In the views[/b]
  step into   n/j/↓ next op, p/k/↑ previous, f first NaN/Inf,
              m forward↔backward of the op, home/end,
              s record another iteration, escape back
  inspector   the chain rule from the loss down to the layer
  reg. view   0 none, 1 L1, 2 L2, + double λ, - halve λ; escape back
  curvature   [ halve / ] double the lr and watch it against the edge
  bayesian    [ halve / ] double the lr (for HMC the step size ε)
  data view   [ halve / ] double the lr and watch the boundary
  breakpoints enter adds what you typed, d or delete removes the
              selected one

[b]The layer table[/b]
  ‖W‖       the weights' norm      ‖∇W‖   the data-loss gradient's norm
  ‖∇pen‖    the penalty's gradient: 2λθ for L2, λ·sign(θ) for L1
  upd/W     ‖Δθ‖/‖θ‖: how much one step changes the weights
            (around 1e-3 is healthy)
  activation f' = the mean local derivative, the factor this layer
            contributes to the chain rule (σ' ≤ 1/4, tanh' ≤ 1,
            ReLU' ∈ {0, 1}); dead / saturated units
  marks     ▼ vanishing  ▲ exploding  ✖ dead ReLU  ≈ saturation
            ! NaN/Inf  ↗ diverging  » lr past the stability edge

[b]The calculus[/b]
  Gradient descent: θ ← θ − η·∇θL. Backpropagation is the chain rule:
  ∂L/∂w₁ = (∂L/∂aₙ)·(∂aₙ/∂aₙ₋₁)···(∂a₂/∂a₁)·(∂a₁/∂w₁).
  When the factors are small the product vanishes; when large, it
  explodes. The inspector shows each factor.
  Curvature: H = ∇²L. One step multiplies the error along H's top
  eigenvector by (1 − η·λ_max), so gradient descent is stable only
  while η < 2/λ_max, the lr edge. Newton's method steps by H⁻¹g;
  Adam's η/(√v̂+ε) is a per-parameter stand-in for 1/Hᵢᵢ.
  Variational inference maximises ELBO = E_q[log p(y|X,θ)] − KL(q‖prior);
  σ stays small where the data constrain the weights. Gradient noise
  ‖std g‖/‖mean g‖ above 1: one weight draw's gradient is mostly noise.

press escape or ? to close, q to quit
"""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape", "dismiss", "close"), Binding("question_mark", "dismiss", "close"),
                Binding("q", "app.quit", "quit")]   # (a modal screen: the app's own binding does not reach here)
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90; max-width: 100%; height: auto; max-height: 100%;
                                  border: round $accent; background: $surface; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = "help"
            scroll.border_subtitle = "↑ ↓ scroll · escape close"   # (at 80x24 it is taller than the screen)
            yield Static(HELP)
