"""Model benchmark (run by hand): MHVAE training and importance-sampling throughput on this machine.

Prints, from one run:
- the float32 matmul peak (a large square matmul), the baseline every GFLOP/s figure is divided by;
- MHVAE training throughput with the paper's MNIST networks at batch 64, next to MultiVae's JMVAE built with
  the same image and label networks and a 26-d latent (optional: ``pip install -e ".[bench]"``);
- importance-sampling throughput of log p(x1, x2) at K = 5000, next to MultiVae's own joint NLL of its JMVAE;
- the projected time of the whole Table 1 (five rows, 10,500 test points, K = 5000) from the measured rate;
- the peak memory of that evaluation at K = 500 and K = 5000 (each in a fresh subprocess);
- with ``--precision``: the MHVAE and JMVAE training step compiled in float32, compiled under
  ``torch.autocast("cpu", bfloat16)``, and in pretrain/run.py's ``precision=bf16`` (compiled, the Linear products in
  bfloat16 and everything else float32: mhvae_perception/models/precision.py), each as a ratio against the eager
  float32 step of the same run (issue 18 asks for 1.8x),
  and the bfloat16 / float32 time of the matrix products at the training shapes (forward, dX, dW).

    python benchmarks/bench_model.py [--points 64] [--train-steps 40] [--skip-multivae] [--precision]
    python benchmarks/bench_model.py --precision-detail   # loss terms per precision, the bf16 step's profile and floor
"""
from __future__ import annotations

import argparse
import functools
import json
import resource
import subprocess
import sys
import threading
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from mhvae_perception import estimators, presets
from mhvae_perception.models import Query
from mhvae_perception.models.precision import compile_loss, training_context

TABLE1_POINTS, TABLE1_K = 10_500, 5000
PRECISION_MODES = ("fp32", "compile", "compile+autocast", "bf16")
PAPER_WARMUPS = {"warmup_modality_epochs": 100, "warmup_core_epochs": 200}  # the MHVAE's; the baselines use U_c


def mnist_batch(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.bernoulli(torch.full((n, 1, 28, 28), 0.2), generator=g),
            "label": torch.nn.functional.one_hot(torch.randint(0, 10, (n,), generator=g), 10).float()}


def matmul_peak(size: int = 4096, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def flops_of(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def training_step(model, batch_size: int = 64):
    """A closure running one Adam (fused) training step of ``model`` on random binary MNIST-shaped data."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    batches = [mnist_batch(batch_size, seed) for seed in range(8)]
    counter = [0]
    model.train()

    def step() -> None:
        out = model.loss(batches[counter[0] % 8], epoch=1.0)
        counter[0] += 1
        opt.zero_grad()
        out.loss.backward()
        opt.step()

    return step


def precision_step(model, mode: str, batch_size: int = 64):
    """A training step of ``model``: eager float32 ("fp32"), compiled float32 ("compile"), compiled under bfloat16
    autocast ("compile+autocast") or pretrain/run.py's ``precision=bf16`` ("bf16": compiled, bfloat16 products);
    weights and optimizer stay float32 in every mode. The warm-up weights move every step, as in training."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    batches = [mnist_batch(batch_size, seed) for seed in range(8)]
    loss = model.loss
    if mode == "bf16":
        loss = compile_loss(loss)  # exactly pretrain/run.py's: static shapes, the epoch a graph input
    elif mode != "fp32":
        loss = torch.compile(loss)
    context = functools.partial(training_context, model, "bf16" if mode == "bf16" else "fp32")
    counter = [0]
    model.train()

    def step():
        with torch.autocast("cpu", torch.bfloat16, enabled=mode == "compile+autocast"), context():
            out = loss(batches[counter[0] % 8], epoch=3.0 + counter[0] / 937)  # inside the warm-ups
        counter[0] += 1
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        return out

    return step


def precision_detail() -> None:
    """What the bf16 path keeps and where its step's time goes: the MHVAE's ``kl/image`` after five steps in
    float32, compiled autocast and ``precision=bf16`` (autocast computes the loss terms in bfloat16), then the
    shares of 30 ``precision=bf16`` steps' CPU time (torch profiler) by kind of work."""
    from torch.profiler import ProfilerActivity, profile

    steps = {}
    for mode in ("fp32", "compile+autocast", "bf16"):
        torch.manual_seed(0)
        steps[mode] = precision_step(presets.build("mnist", "mhvae", **PAPER_WARMUPS), mode)
        for _ in range(5):
            out = steps[mode]()
        print(f"MHVAE kl/image after 5 steps, {mode}: {float(out.terms['kl/image'])!r}")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(30):
            steps["bf16"]()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    kinds = {"matrix products": lambda k: k in ("aten::mm", "aten::addmm"),
             "compiled element-wise kernels": lambda k: "CompiledFxGraph" in k,
             "Adam (fused kernel and its Python step)": lambda k: "adam" in k.lower() or "Optimizer.step" in k}
    print("precision=bf16 MHVAE step, share of CPU time over 30 steps: " + ", ".join(
        f"{name} {100 * sum(e.self_cpu_time_total for e in events if is_kind(e.key)) / total:.0f} %"
        for name, is_kind in kinds.items()))
    for kind in ("mhvae", "jmvae"):
        step_floor(kind)


def step_floor(kind: str, batch_size: int = 64) -> None:
    """What a ``precision=bf16`` step cannot go below while weights and Adam stay float32: its bfloat16 products
    (forward, dX, dW of every Linear), the fused Adam update and the weight casts, each timed alone, beside the
    eager float32 step and the time 1.8x that step asks for (the rest of a step: normalisation, activations,
    the loss, autograd and dispatch, must fit in the difference)."""
    torch.manual_seed(0)
    model = presets.build("mnist", kind, **PAPER_WARMUPS)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    ms = 1e3  # mean_seconds -> milliseconds
    adam = ms * mean_seconds(torch.optim.Adam(params, lr=1e-3, fused=True).step)
    low = [m.weight.detach().to(torch.bfloat16) for m in linears]
    casts = ms * (mean_seconds(lambda: [m.weight.to(torch.bfloat16) for m in linears])
                  + mean_seconds(lambda: [w.float() for w in low]))
    products = {}
    for dtype in (torch.float32, torch.bfloat16):
        operands = [(torch.randn(batch_size, m.in_features, dtype=dtype),
                     torch.randn(batch_size, m.out_features, dtype=dtype), m.weight.detach().to(dtype))
                    for m in linears]
        products[dtype] = ms * mean_seconds(lambda: [(x @ w.t(), g @ w, g.t() @ x) for x, g, w in operands])
    fp32_step = ms * batch_size / block_rate(precision_step(model, "fp32"), 40, batch_size)
    floor = products[torch.bfloat16] + adam + casts
    print(f"{kind.upper()} ({sum(p.numel() for p in params) / 1e6:.2f} M parameters, {len(linears)} Linear layers), "
          f"ms per step of 64: eager float32 step {fp32_step:.1f} (its products {products[torch.float32]:.1f}); "
          f"bf16 floor {floor:.1f} = products {products[torch.bfloat16]:.1f} + fused Adam {adam:.1f} + weight casts "
          f"{casts:.1f}; 1.8x asks {fp32_step / 1.8:.1f}, leaving {fp32_step / 1.8 - floor:.1f} for everything else "
          f"(the float32 step spends {fp32_step - products[torch.float32] - adam:.1f} on it)")


def mean_seconds(fn, repeats: int = 100) -> float:
    """Mean wall time of one call of ``fn`` over ``repeats`` calls, after 10 warm-up calls."""
    for _ in range(10):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def matmul_ratios(batch_size: int = 64, repeats: int = 200) -> list[str]:
    """bfloat16 / float32 time of the products of one Linear layer's step at the MNIST networks' shapes."""
    lines = []
    for fan_in, fan_out in ((784, 512), (512, 512), (512, 784), (128, 128)):
        times = {}
        for dtype in (torch.float32, torch.bfloat16):
            x, w = torch.randn(batch_size, fan_in, dtype=dtype), torch.randn(fan_out, fan_in, dtype=dtype)
            g = torch.randn(batch_size, fan_out, dtype=dtype)
            products = (lambda: x @ w.t(), lambda: g @ w, lambda: g.t() @ x)  # forward, dX, dW
            times[dtype] = sum(mean_seconds(fn, repeats) for fn in products)
        lines.append(f"  {batch_size}x{fan_in} @ {fan_in}x{fan_out} (forward + dX + dW): float32 "
                     f"{times[torch.float32] * 1e6:.0f} us, bfloat16 {times[torch.bfloat16] * 1e6:.0f} us "
                     f"-> {times[torch.float32] / times[torch.bfloat16]:.2f}x")
    return lines


def precision_report(train_steps: int) -> None:
    """Training-step ratios of the low-precision modes against float32, measured in alternating blocks."""
    for kind in ("mhvae", "jmvae"):
        steps = {}
        for mode in PRECISION_MODES:
            torch.manual_seed(0)
            steps[mode] = precision_step(presets.build("mnist", kind, **PAPER_WARMUPS), mode)
            start = time.perf_counter()
            for _ in range(5):
                steps[mode]()  # warm-up (compilation for the compiled mode)
            if mode != "fp32":
                print(f"  {kind} {mode}: compiled in {time.perf_counter() - start:.0f} s")
        rates = {mode: [] for mode in steps}
        for _ in range(3):
            for mode, step in steps.items():
                rates[mode].append(block_rate(step, train_steps))
        base = max(rates["fp32"])
        print(f"{kind.upper()} training step, MNIST nets, batch 64: float32 {base:,.0f} samples/s; "
              + ", ".join(f"{mode} {max(r):,.0f} ({max(r) / base:.2f}x)" for mode, r in rates.items() if mode != "fp32")
              + " (target 1.8x)")
    print("matrix products, bfloat16 against float32:")
    print("\n".join(matmul_ratios()))


def block_rate(step, steps: int, batch_size: int = 64) -> float:
    """Samples/s of one block of ``steps`` training steps."""
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - start)


def time_importance_sampling(model, points: int, num_samples: int) -> tuple[float, float]:
    """(seconds per 1,000 points, GFLOP/s) for log p(x1, x2) from both modalities."""
    batch = mnist_batch(points, seed=1)
    query = Query(("image", "label"), ("image", "label"))
    model.eval()
    chunk = estimators.default_chunk_size(model, points)
    with torch.no_grad():
        flops_chunk = flops_of(lambda: model.log_importance_weights(batch, [query], chunk))
    start = time.perf_counter()
    estimators.log_likelihoods(model, batch, [query], num_samples)
    elapsed = time.perf_counter() - start
    return elapsed / points * 1000, flops_chunk * num_samples / chunk / elapsed / 1e9


def time_table(model, points: int, num_samples: int) -> tuple[float, float]:
    """(seconds, GFLOP/s) of the five paper rows for ``points`` data points."""
    batch = mnist_batch(points, seed=2)
    model.eval()
    chunk = estimators.default_chunk_size(model, points)
    names = model.modality_names
    queries = [Query((names[0],), (names[0],)), Query((names[0],), names), Query((names[1],), names),
               Query(names, names), Query((names[1],), (names[1],))]
    with torch.no_grad():
        flops_chunk = flops_of(lambda: model.log_importance_weights(batch, queries, chunk))
    start = time.perf_counter()
    estimators.paper_rows(model, batch, num_samples)
    elapsed = time.perf_counter() - start
    return elapsed, flops_chunk * num_samples / chunk / elapsed / 1e9


def resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20


def peak_memory_child(num_samples: int, points: int) -> None:
    """Resident memory sampled every 2 ms while the five rows are estimated, relative to just before."""
    model = presets.build("mnist").eval()
    batch = mnist_batch(points, seed=3)
    base, peak, done = resident_mib(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], resident_mib())
            time.sleep(0.002)

    watcher = threading.Thread(target=sample)
    watcher.start()
    estimators.paper_rows(model, batch, num_samples)
    done.set()
    watcher.join()
    print(json.dumps({"peak_mib": peak[0], "growth_mib": peak[0] - base}))


def peak_memory(num_samples: int, points: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--memory-child", str(num_samples), "--points", str(points),
                          "--threads", str(torch.get_num_threads())],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=64, help="test points for the importance-sampling timings")
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--skip-multivae", action="store_true")
    parser.add_argument("--precision", action="store_true",
                        help="only the training-step ratios of compiled and low-precision steps against float32")
    parser.add_argument("--precision-detail", action="store_true",
                        help="only the loss terms of the low-precision modes, the bf16 step's profile and its "
                             "floor (products + Adam + casts) against the 1.8x budget")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child is not None:
        return peak_memory_child(args.memory_child, args.points)

    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.precision:
        return precision_report(args.train_steps)
    if args.precision_detail:
        return precision_detail()
    peak = matmul_peak()
    print(f"float32 matmul peak (4096^3): {peak:.1f} GFLOP/s")

    model = presets.build("mnist", "mhvae")
    mhvae_step = training_step(model)
    for _ in range(5):
        mhvae_step()
    flops = flops_of(mhvae_step)
    reference_step, reference = None, None
    if not args.skip_multivae:
        try:
            import multivae_reference
            reference_step = multivae_reference.training_step()
            for _ in range(5):
                reference_step()
        except ImportError as err:
            print(f"MultiVae not importable ({err}); install the bench extra: pip install -e '.[bench]'")
    # alternate blocks of the two so that both see the same machine state; report each one's best block
    rates = {"mhvae": [], "multivae": []}
    for _ in range(3):
        rates["mhvae"].append(block_rate(mhvae_step, args.train_steps))
        if reference_step:
            rates["multivae"].append(block_rate(reference_step, args.train_steps))
    rate = max(rates["mhvae"])
    print(f"MHVAE training, MNIST nets, batch 64: {rate:,.0f} samples/s, "
          f"{rate / 64 * flops / 1e9:.1f} GFLOP/s = {rate / 64 * flops / 1e9 / peak:.0%} of peak")
    if reference_step:
        ref_rate = max(rates["multivae"])
        print(f"MultiVae JMVAE training, same nets, z=26, batch 64: {ref_rate:,.0f} samples/s"
              f"  -> MHVAE / MultiVae = {rate / ref_rate:.2f}x (target >= 1.5x)")
        reference = {"nll_s_per_1000_k1000": multivae_reference.joint_nll_seconds(args.points)}

    sec, gflops = time_importance_sampling(model, args.points, TABLE1_K)
    print(f"MHVAE log p(x1,x2) from x1,x2, K={TABLE1_K}: {sec:.1f} s per 1,000 points, {gflops:.1f} GFLOP/s "
          f"= {gflops / peak:.0%} of peak (target >= 75%)")
    if reference:
        print(f"MultiVae JMVAE joint NLL, K=1000 (its defaults): {reference['nll_s_per_1000_k1000']:.1f} s per 1,000 points"
              f" -> per sample, MHVAE is {reference['nll_s_per_1000_k1000'] / 1000 / (sec / TABLE1_K):.1f}x faster")
    seconds, gflops = time_table(model, args.points, TABLE1_K)
    projected = seconds / args.points * TABLE1_POINTS / 60
    print(f"Table 1 (5 rows, K={TABLE1_K}): {seconds:.1f} s for {args.points} points, {gflops:.1f} GFLOP/s "
          f"= {gflops / peak:.0%} of peak; projected {projected:.1f} min for {TABLE1_POINTS:,} points (target < 40)")
    late_peak = matmul_peak()
    print(f"float32 matmul peak measured again at the end: {late_peak:.1f} GFLOP/s (first: {peak:.1f})")
    for k in (500, 5000):
        mem = peak_memory(k, args.points)
        print(f"peak memory of the Table 1 rows at K={k}: process peak {mem['peak_mib']:.0f} MiB "
              f"(+{mem['growth_mib']:.0f} MiB during the estimate)")


if __name__ == "__main__":
    main()
