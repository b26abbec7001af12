"""Variational inference where the answer is known: Bayesian linear regression, exact posterior.

The model is y = Xw + noise, noise ~ N(0, σn²) with σn = 0.3 known, prior w ~ N(0, s²I), s = 1.
The posterior is Gaussian, in closed form (computed below, before training):

    precision  S⁻¹ = XᵀX/σn² + I/s²        mean  m = S·Xᵀy/σn²

The model is one BayesLinear(3, 1, bias=False, prior_sigma=s): a mean-field q(w) = Πᵢ N(μᵢ, σᵢ²),
trained with Adam on −ELBO per datum (one weight draw per step). The best q of that family is
known too: μ = m, and σᵢ = 1/√(S⁻¹)ᵢᵢ, NOT the marginal posterior std √Sᵢᵢ. Why: the ELBO's
gap is KL(q‖p(w|D)), and for a Gaussian p that KL is smallest where 1/σᵢ² = (S⁻¹)ᵢᵢ, the
curvature of −log p along wᵢ with the other weights held fixed. Features 1 and 2 are
correlated here (x₂ = 0.8·x₁ + 0.6·z), so the posterior is a tilted ellipse; an axis-aligned q
cannot tilt, and it fits the ellipse's narrow conditional width instead of its wider marginal
one: mean-field VI is overconfident (for w₁, w₂ by a factor 1/√(1 − 0.8²) ≈ 1.7).
  exact_mean      m
  exact_std       1/√diag(S⁻¹): what VI should find
  marginal_std    √diag(S): the true posterior spread (larger for w₁, w₂)

What to look for: the ELBO terms (the expected log-likelihood rises as μ reaches m, the KL grows
as q narrows) and the layer's posterior σ settling near 0.021. To compare after the run (from
Python), the layer being `model`:
    model.weight_mu.data.ravel()  vs  exact_mean      (within 1% or so)
    model.weight_sigma.ravel()    vs  exact_std       (within 5% or so; marginal_std is 1.7× larger)
The gradient is a one-draw Monte Carlo estimate, so μ and σ never settle exactly: at a constant
learning rate η they jitter around the optimum, σ by about √(0.35·η) relative (2-3% here).
Press ] to double η (once the run has ended, then t to train on) and watch the jitter grow; the small η (and init_sigma = 0.03, near the
answer σn/√N, instead of the default 0.05) is what makes 3000 steps enough.
"""
import numpy as np

import calcml as cm

seed = 0
rng = np.random.default_rng(seed)
N, noise_sigma, prior_sigma = 200, 0.3, 1.0
true_w = np.array([1.0, -1.5, 1.0])
X = rng.standard_normal((N, 3))
X[:, 1] = 0.8 * X[:, 0] + 0.6 * X[:, 1]          # correlated features: a tilted posterior
y = (X @ true_w + noise_sigma * rng.standard_normal(N)).reshape(-1, 1)
data = (X, y)

# The exact posterior N(m, S) and the mean-field optimum.
precision = X.T @ X / noise_sigma ** 2 + np.eye(3) / prior_sigma ** 2
exact_mean = np.linalg.solve(precision, X.T @ y[:, 0] / noise_sigma ** 2)
exact_std = 1.0 / np.sqrt(np.diag(precision))                 # what mean-field VI should find
marginal_std = np.sqrt(np.diag(np.linalg.inv(precision)))     # the true posterior spread (larger)

model = cm.nn.BayesLinear(3, 1, bias=False, prior_sigma=prior_sigma, init_sigma=0.03)


def log_likelihood(out, target):
    return cm.bayes.Normal(out, noise_sigma).log_prob(target)


def loss(pred, target):
    return cm.bayes.elbo_from_outputs(model, log_likelihood, pred, target, n_data=N).loss


optimizer = cm.optim.Adam(model.parameters(), lr=0.002, betas=(0.9, 0.99))
steps = 3000
