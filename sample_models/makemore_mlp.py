"""A makemore-style character-level language model (Bengio et al. 2003): from the last three
characters of a name, predict the next one.

Each character (a–z, and '.' marking a name's start and end: 27 in all) is looked up in an
embedding table C = nn.Embedding(27, 10), row i being character i's 10 numbers; the three rows of
a context are joined (30 numbers), go through a tanh layer of 64 units and out to 27 logits,
and cross-entropy scores the next character. Before training every character is about equally
likely, so the loss starts near log 27 ≈ 3.30; it falls as the model learns which letters follow
which. The words are 200 short names built from syllables in this file (no download).

The embedding's gradient: the layer only picks rows, C[indices], so ∂L/∂C is zero except in the
rows of the characters that appear in the mini-batch, and each such row gets the sum of the
gradients of every place it was picked. Look for: the inspector (enter on layer 0, the
Embedding) says its factor is "rows picked by the indices" and that it has no gradient to pass
on to its input (indices are not a function of any weight); step into (s) shows the op
'W[indices]: the rows picked' and, going backward, its gradient put back at the picked rows.
"""
import numpy as np

import calcml as cm
import calcml.nn.functional as F

seed = 0
cm.manual_seed(seed)

# 200 short names from syllables, deterministically (a fixed seed), so the file needs no data
_rng = np.random.default_rng(seed)
_syllables = ["an", "na", "el", "la", "ma", "ri", "ja", "ol", "em", "ia", "ar", "li", "ne", "ko", "sa",
              "th", "ev", "is", "yn", "da", "lu", "ca", "mi", "on", "be", "zo", "ha", "ty", "le", "ro"]
words = sorted({"".join(_rng.choice(_syllables, size=_rng.integers(2, 4))) for _ in range(260)})[:200]

chars = "." + "abcdefghijklmnopqrstuvwxyz"
index = {c: i for i, c in enumerate(chars)}
block = 3      # context length: how many characters predict the next one

contexts, targets = [], []
for word in words:
    context = [0] * block
    for c in word + ".":
        contexts.append(context)
        targets.append(index[c])
        context = context[1:] + [index[c]]
# calcml tensors hold floats: indices and labels are whole numbers stored as floats
X = cm.tensor(np.array(contexts, dtype=float))
Y = cm.tensor(np.array(targets, dtype=float))
data = cm.data.DataLoader((X, Y), batch_size=64, shuffle=True, seed=seed)

model = cm.nn.Sequential(
    cm.nn.Embedding(27, 10),          # (batch, 3) indices -> (batch, 3, 10)
    cm.nn.Flatten(),                  # -> (batch, 30): the context's three rows side by side
    cm.nn.Linear(block * 10, 64),
    cm.nn.Tanh(),
    cm.nn.Linear(64, 27),
)


def loss(logits, labels):
    return F.cross_entropy(logits, labels)


optimizer = cm.optim.SGD(model.parameters(), lr=0.3)
steps = 400
