"""L1 against L2: a linear regression where only 3 of 20 features matter.

L2 adds λΣθ² (gradient 2λθ): every weight is pulled towards zero in proportion to its size, so
the pull fades as a weight shrinks and the 17 irrelevant weights end small but not zero.
L1 adds λΣ|θ| (gradient λ·sign θ): the same push for every weight, however small, so the
irrelevant ones are driven to zero and the model becomes sparse.
This file starts with L1: watch 'sparsity' climb in the regularisation view (key r), then switch
to L2 there (key 2, or set regularizer = cm.reg.L2(0.05)) and watch the weights shrink without
vanishing: sparsity falls back to a few per cent. If the run has ended first, press t to train on
(or ctrl+r to start again from step 0 with the regulariser you chose).
"""
import calcml as cm
import calcml.nn.functional as F

seed = 0
X, y = cm.data.sparse_regression(n=200, n_features=20, n_informative=3, noise=0.1, seed=seed)
data = (X, y)

model = cm.nn.Linear(20, 1)


def loss(pred, target):
    return F.mse_loss(pred, target)


optimizer = cm.optim.SGD(model.parameters(), lr=0.01)
regularizer = cm.reg.L1(0.05)
steps = 1500
