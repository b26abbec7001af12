"""What the debugger's diagnostics cost on a PyTorch model: a Session step (the torch backend,
every per-step diagnostic on, as calcml-debug runs it) against a plain PyTorch training step.

Targets: <= 1.2x on the 784-256-256-10 MLP, batch 64, CPU, float32 (torch's default), and
<= 1.1x on a larger CNN: CIFAR-10-sized images (batch 32 of 3x32x32), three 3x3 convolutions
(32, 64, 128 channels) each with a ReLU and a 2x2 max-pool, then Linear 2048-256-10.

  bare     loss = cross_entropy(model(X), y); optimizer.zero_grad(); loss.backward();
           optimizer.step()     (torch.optim.SGD, lr 0.01; one fixed batch)
  session  calcml.debug Session over the same model, optimiser and batch (session_config(),
           driven by step(n) and ticks, as in session_step.py): module and tensor hooks, the
           per-parameter norms, update ratios and sparsity every so often, activation
           statistics, warnings, history, breakpoint check, snapshot.

Both time the same model (the session's), in rounds that alternate bare/session; the ratio is
the median over rounds of session/bare per-step time. First the script checks that the two
train alike (two copies from one seed, three steps: the 'agree' column). Each thread setting is
measured in a fresh child process: one thread (OPENBLAS/OMP/MKL_NUM_THREADS=1 and
torch.set_num_threads(1)) is the headline; the default-thread figure is printed beside it.

Beside it, where cockpit-for-pytorch imports (it is not a dependency: `pip install
cockpit-for-pytorch`, or `--cockpit-path DIR` for a folder it was installed into with
`pip install --target DIR`), Cockpit's "economy" configuration tracked every step on the same
MLP against a plain step, in the same child: its published overheads are 1.5x on a CIFAR-10
CNN on a GPU and 63x on an MNIST MLP on a CPU. Where it does not import, the script says so.

    python benchmarks/torch_session_step.py           # both models, a few minutes
    python benchmarks/torch_session_step.py --model cnn
    python benchmarks/torch_session_step.py --quick   # a smoke run
    python benchmarks/torch_session_step.py --cockpit-path /tmp/cockpit_pkgs
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchutil sits beside this script
import benchutil as bu  # noqa: E402

TARGETS = {"mlp": 1.2, "cnn": 1.1}
WIDTHS, BATCH, LR, SEED = (784, 256, 256, 10), 64, 0.01, 0
CNN_BATCH, CHANNELS = 32, (3, 32, 64, 128)
TITLES = {"mlp": f"{WIDTHS[0]}-{'-'.join(map(str, WIDTHS[1:]))} MLP, batch {BATCH}",
          "cnn": f"CNN {'-'.join(map(str, CHANNELS))} channels, 3x32x32 images, batch {CNN_BATCH}"}


def build(kind: str = "mlp"):
    import torch
    torch.manual_seed(SEED)
    if kind == "cnn":
        return build_cnn()
    layers = []
    for i, (a, b) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:])):
        if i:
            layers.append(torch.nn.ReLU())
        layers.append(torch.nn.Linear(a, b))
    model = torch.nn.Sequential(*layers)
    rng = np.random.default_rng(SEED + 1)
    X = torch.from_numpy(rng.standard_normal((BATCH, WIDTHS[0])).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, WIDTHS[-1], size=BATCH))
    return model, X, y, torch.optim.SGD(model.parameters(), lr=LR)


def build_cnn():
    import torch
    from torch import nn
    layers = []
    for a, b in zip(CHANNELS[:-1], CHANNELS[1:]):
        layers += [nn.Conv2d(a, b, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(CHANNELS[-1] * 4 * 4, 256), nn.ReLU(), nn.Linear(256, 10))
    rng = np.random.default_rng(SEED + 1)
    X = torch.from_numpy(rng.standard_normal((CNN_BATCH, 3, 32, 32)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 10, size=CNN_BATCH))
    return model, X, y, torch.optim.SGD(model.parameters(), lr=LR)


def bare_steps(model, X, y, optimizer, n: int) -> None:
    import torch
    loss_fn = torch.nn.functional.cross_entropy
    for _ in range(n):
        loss = loss_fn(model(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def make_session(model, X, y, optimizer):
    import torch
    from calcml.debug.loader import ModelSpec
    from calcml.debug.session import Session, session_config
    spec = ModelSpec(path="<benchmark>", name="bench_torch", description="", model=model,
                     loss=torch.nn.functional.cross_entropy, data=(X.numpy(), y.numpy()), optimizer=optimizer,
                     regularizer=None, batch_size=None, val_data=None, seed=SEED, steps=None, framework="torch")
    return Session(spec, session_config())


def session_steps(session, n: int) -> None:
    session.step(n)
    for _ in range(n):
        session.tick()


def timed(fn, n: int) -> float:
    start = time.perf_counter()
    fn(n)
    return (time.perf_counter() - start) / n


def measure(kind: str, round_seconds: float, rounds: int) -> dict:
    import torch
    from calcml.debug.allocator import keep_freed_memory
    keep_freed_memory()   # as calcml-debug's processes run
    if bu.current_threads() == bu.ONE:
        torch.set_num_threads(1)
    # the two train alike
    m1, X1, y1, o1 = build(kind)
    m2, X2, y2, o2 = build(kind)
    bare_steps(m1, X1, y1, o1, 3)
    s = make_session(m2, X2, y2, o2)
    session_steps(s, 3)
    agree = all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(m1.parameters(), m2.parameters()))
    del m1, o1
    model, optimizer = m2, o2
    X, y = s.backend.as_batch((X2, y2))
    bare = lambda n: bare_steps(model, X, y, optimizer, n)          # noqa: E731
    sess = lambda n: session_steps(s, n)                             # noqa: E731
    n = 1
    while timed(bare, n) * n < 0.02:
        n *= 2
    n = max(1, round(round_seconds / min(timed(bare, n) for _ in range(3))))
    tb_all, ts_all, ratios = [], [], []
    for r in range(rounds):
        if r % 2 == 0:
            tb, ts = timed(bare, n), timed(sess, n)
        else:
            ts, tb = timed(sess, n), timed(bare, n)
        tb_all.append(tb)
        ts_all.append(ts)
        ratios.append(ts / tb)
    result = {"bare_ms": 1e3 * statistics.median(tb_all), "session_ms": 1e3 * statistics.median(ts_all),
            "ratio": statistics.median(ratios), "spread": bu.fmt_spread(ratios), "rounds": len(ratios), "n": n,
            "agree": agree, "load": bu.load_average(), "threads": torch.get_num_threads()}
    result["cockpit"] = cockpit_ratio(rounds) if kind == "mlp" else None
    return result


def cockpit_ratio(rounds: int):
    """Cockpit's economy configuration, every step, against a plain step of a copy of the model:
    {"ratio", "bare_ms", "cockpit_ms"}, or {"missing": why} where it does not import or run."""
    import torch
    try:
        from backpack import extend
        from cockpit import Cockpit
        from cockpit.utils.configuration import configuration
    except Exception as error:   # not installed, or it needs what this environment lacks
        return {"missing": f"{type(error).__name__}: {error}"}
    model, X, y, optimizer = build()
    model = extend(model)
    mean_loss = extend(torch.nn.CrossEntropyLoss(reduction="mean"))
    per_sample = torch.nn.CrossEntropyLoss(reduction="none")
    cockpit = Cockpit(model.parameters(), quantities=configuration("economy"))
    step = [-1]

    def tracked(n):
        for _ in range(n):
            step[0] += 1
            out = model(X)
            loss, losses = mean_loss(out, y), per_sample(out, y)
            optimizer.zero_grad()
            with cockpit(step[0], info={"batch_size": X.shape[0], "individual_losses": losses, "loss": loss,
                                        "optimizer": optimizer}):
                loss.backward(create_graph=cockpit.create_graph(step[0]))
            optimizer.step()

    bare_model, bX, by, bare_optimizer = build()
    bare = lambda n: bare_steps(bare_model, bX, by, bare_optimizer, n)   # noqa: E731
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")    # its full backward hooks warn about the input
            tracked(2)
            ratios, tb_all, tc_all = [], [], []
            for _ in range(max(3, rounds // 4)):
                tb, tc = timed(bare, 50), timed(tracked, 5)
                tb_all.append(tb)
                tc_all.append(tc)
                ratios.append(tc / tb)
    except Exception as error:
        return {"missing": f"it failed to run: {type(error).__name__}: {error}"}
    return {"ratio": statistics.median(ratios), "bare_ms": 1e3 * statistics.median(tb_all),
            "cockpit_ms": 1e3 * statistics.median(tc_all)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", choices=("mlp", "cnn", "both"), default="both")
    parser.add_argument("--cockpit-path", help="a folder where cockpit-for-pytorch was installed (pip --target)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cockpit_path:
        sys.path.append(args.cockpit_path)     # after this environment's own packages (its torch)
    round_seconds, rounds = (0.1, 6) if args.quick else (0.3, 16)
    if args.child:
        bu.emit(measure(args.model, round_seconds, rounds))
        return
    print(__doc__.split("\n\n")[0])
    cockpits = []
    for kind in ("mlp", "cnn") if args.model == "both" else (args.model,):
        target = TARGETS[kind]
        print(f"\n  {TITLES[kind]}, CPU, float32; ratio = median over rounds of session/bare per-step time\n")
        print(f"{'threads':<16} {'bare ms':>8} {'session ms':>11} {'ratio':>6}  {'spread':<22} {'rounds':>6} "
              f"{'N':>4}  {'load':<10} agree  target")
        child = [os.path.abspath(__file__), "--child", "--model", kind] + (["--quick"] if args.quick else []) + \
            (["--cockpit-path", args.cockpit_path] if args.cockpit_path else [])
        for threads in bu.SETTINGS:
            r = bu.run_child(child, threads)
            verdict = ("PASS" if r["ratio"] <= target else "MISS") if threads == bu.ONE else "(informative)"
            print(f"{bu.threads_label(threads) + ' (' + str(r['threads']) + ')':<16} {r['bare_ms']:>8.3f} "
                  f"{r['session_ms']:>11.3f} {r['ratio']:>6.2f}  {r['spread']:<22} {r['rounds']:>6} {r['n']:>4}  "
                  f"{r['load']:<10} {'yes' if r['agree'] else 'NO':<5}  <= {target}: {verdict}")
            if r["cockpit"] is not None:
                cockpits.append((threads, r["cockpit"]))
    if cockpits:
        print()
    for threads, c in cockpits:
        if "missing" in c:
            print(f"Cockpit on the MLP ({bu.threads_label(threads)}): not measured: cockpit-for-pytorch did not "
                  f"import or run ({c['missing']})")
        else:
            print(f"Cockpit economy on the MLP, every step ({bu.threads_label(threads)}): {c['cockpit_ms']:.1f} ms "
                  f"against {c['bare_ms']:.3f} ms plain: {c['ratio']:.0f}x")


if __name__ == "__main__":
    main()
