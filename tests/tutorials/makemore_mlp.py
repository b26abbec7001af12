# A character-level MLP language model in the makemore style: a context of 3 characters is
# looked up in an embedding table C[X], flattened with .view, through a tanh hidden layer to
# logits, trained by cross_entropy with manual SGD updates on minibatches; then names are sampled
# with torch.multinomial.
import numpy as np
import torch
import torch.nn.functional as F

words = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper", "evelyn", "abigail",
         "emily", "ella", "elizabeth", "camila", "luna", "sofia", "avery", "mila", "aria", "scarlett"]
chars = sorted(set("".join(words)))
stoi = {s: i + 1 for i, s in enumerate(chars)}
stoi["."] = 0
itos = {i: s for s, i in stoi.items()}
vocab = len(stoi)

block_size = 3
X, Y = [], []
for w in words:
    context = [0] * block_size
    for ch in w + ".":
        ix = stoi[ch]
        X.append(context)
        Y.append(ix)
        context = context[1:] + [ix]
X = torch.tensor(X)
Y = torch.tensor(Y)

g = torch.Generator().manual_seed(2147483647)
C = torch.randn((vocab, 8), generator=g)
W1 = torch.randn((block_size * 8, 64), generator=g) * 0.2
b1 = torch.randn(64, generator=g) * 0.01
W2 = torch.randn((64, vocab), generator=g) * 0.1
b2 = torch.zeros(vocab)
parameters = [C, W1, b1, W2, b2]
n_parameters = sum(p.nelement() for p in parameters)
for p in parameters:
    p.requires_grad = True


@torch.no_grad()
def split_loss():
    h = torch.tanh(C[X].view(-1, block_size * 8) @ W1 + b1)
    return F.cross_entropy(h @ W2 + b2, Y).item()


first_loss = split_loss()
lossi = []
for step in range(300):
    ix = torch.randint(0, X.shape[0], (32,), generator=g)
    emb = C[X[ix]]
    h = torch.tanh(emb.view(-1, block_size * 8) @ W1 + b1)
    logits = h @ W2 + b2
    loss = F.cross_entropy(logits, Y[ix])
    for p in parameters:
        p.grad = None
    loss.backward()
    lr = 0.1 if step < 200 else 0.01
    for p in parameters:
        p.data += -lr * p.grad
    lossi.append(loss.log10().item())
final_loss = split_loss()

samples = []
for _ in range(5):
    out, context = [], [0] * block_size
    while len(out) < 20:
        emb = C[torch.tensor([context])]
        h = torch.tanh(emb.view(1, -1) @ W1 + b1)
        probs = F.softmax(h @ W2 + b2, dim=1)
        ix = torch.multinomial(probs, num_samples=1, generator=g).item()
        context = context[1:] + [ix]
        if ix == 0:
            break
        out.append(itos[ix])
    samples.append("".join(out))

result = {"first_loss": first_loss, "final_loss": final_loss, "n_parameters": n_parameters,
          "samples": samples, "vocab": sorted(itos.values())}
print(result)
