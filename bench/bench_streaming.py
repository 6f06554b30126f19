"""Streaming interpretation at scale: peak memory and items/s of StreamingStats against a bare softmax + top-k loop.

Synthetic logits (N x C, float32) are generated batch by batch from a per-batch seed and never held whole.
- bare: softmax, then the running top k of the items by confidence (torch.topk over kept + batch)
- stream: softmax, per-item cross-entropy, then StreamingStats.update (confusion and calibration counts, per-class
  counts, exact top k by loss and by each of the four uncertainty measures, kept with their probability rows)
- generate: only the generation of the batches, which both loops pay
Each run is a fresh process; memory is the rise of its peak RSS (getrusage ru_maxrss) over its state after
start-up, so it counts torch's C allocations (tracemalloc would not see them). Prints medians over --runs runs
at --n items and one run at --n-full items.
Run: .venv/bin/python bench/bench_streaming.py [--runs 5] [--n 200000] [--n-full 2000000]
"""
import argparse, json, resource, statistics, subprocess, sys, time

def rss_mb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def batches(n, c, bs, boost, seed=0):
    "(first item, logits, targets) for n items, each batch drawn from its own seed: the same batches in every loop"
    import torch
    for i, start in enumerate(range(0, n, bs)):
        g = torch.Generator().manual_seed(seed + i)
        b = min(bs, n - start)
        targs = torch.randint(0, c, (b,), generator=g)
        logits = torch.randn(b, c, generator=g) * 2
        # the target's logit raised by N(boost, 3): boost 10 is right on ~83% of 1,000 classes (ImageNet-like), 4 on ~12%
        logits[torch.arange(b), targs] += boost + 3 * torch.randn(b, generator=g) * (boost > 4)
        yield start, logits, targs

def run(case, n, c, bs, k, boost):
    import torch, torch.nn.functional as F
    torch.set_num_threads(1)
    if case == 'stream':
        from fastinterp.streaming import StreamingStats
        stats = StreamingStats(c, k)
        def step(start, logits, targs):
            stats.update(logits.softmax(1), targs, F.cross_entropy(logits, targs, reduction='none'), torch.arange(start, start + len(targs)))
    elif case == 'bare':
        kept = torch.empty(0)
        def step(start, logits, targs):
            nonlocal kept
            conf = logits.softmax(1).max(1).values
            kept = torch.cat([kept, -conf]).topk(min(k, len(kept) + len(conf))).values
    else: step = lambda *b: None
    base = rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    for b in batches(n, c, bs, boost): step(*b)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    res = {'time': cpu, 'wall': wall, 'items_per_s': n / cpu, 'peak_mb': rss_mb() - base}
    if case == 'stream':
        bins = stats.compute()['calibration_bins']
        res.update(accuracy=float(bins.correct.sum()) / n, mean_confidence=float(bins.confidence.sum()) / n)
    return res

def measure(case, n, a):
    r = subprocess.run([sys.executable, __file__, '--child', case, '--n', str(n), '--c', str(a.c), '--bs', str(a.bs), '--k', str(a.k),
                        '--boost', str(a.boost)],
                       capture_output=True, text=True)
    if r.returncode: sys.exit(f"{case} at n={n} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])

def main():
    p = argparse.ArgumentParser()
    p.add_argument('--runs', type=int, default=5); p.add_argument('--n', type=int, default=200_000)
    p.add_argument('--n-full', type=int, default=2_000_000); p.add_argument('--c', type=int, default=1000)
    p.add_argument('--bs', type=int, default=1000); p.add_argument('--k', type=int, default=100)
    p.add_argument('--boost', type=float, default=10, help="mean raise of the target's logit: 10 is ImageNet-like, 4 a poor model")
    p.add_argument('--child')
    a = p.parse_args()
    if a.child: return print(json.dumps(run(a.child, a.n, a.c, a.bs, a.k, a.boost)))
    cases = ('generate', 'bare', 'stream')
    res = {c: [] for c in cases}
    for _ in range(a.runs):  # interleaved, so a busy spell of the machine hits every case alike
        for c in cases: res[c].append(measure(c, a.n, a))
    med = {c: {f: statistics.median(r[f] for r in rs) for f in rs[0]} for c, rs in res.items()}
    print(f"N={a.n:,} x C={a.c:,}, batches of {a.bs}, k={a.k}, boost {a.boost}: median of {a.runs} runs, each in a fresh process")
    print(f"synthetic classifier: accuracy {med['stream']['accuracy']:.1%}, mean confidence {med['stream']['mean_confidence']:.1%}")
    print(f"{'case':<10}{'time':>10}{'items/s':>12}{'peak RSS rise':>16}")
    for c in cases: print(f"{c:<10}{med[c]['time']:>9.2f}s{med[c]['items_per_s']:>12,.0f}{med[c]['peak_mb']:>13.1f} MB")
    gen = med['generate']['time']
    print(f"time stream / bare: {med['stream']['time'] / med['bare']['time']:.2f} (with generation), "
          f"{(med['stream']['time'] - gen) / (med['bare']['time'] - gen):.2f} (generation subtracted)")
    full = {c: measure(c, a.n_full, a) for c in cases}
    print(f"\nN={a.n_full:,} x C={a.c:,}, one run each (all N x C logits would take {a.n_full * a.c * 4 / 2**30:.1f} GiB as float32)")
    for c in cases: print(f"{c:<10}{full[c]['time']:>9.2f}s{full[c]['items_per_s']:>12,.0f}{full[c]['peak_mb']:>13.1f} MB")
    gen = full['generate']['time']
    print(f"time stream / bare: {full['stream']['time'] / full['bare']['time']:.2f} (with generation), "
          f"{(full['stream']['time'] - gen) / (full['bare']['time'] - gen):.2f} (generation subtracted)")
    print(f"stream peak RSS rise at N={a.n_full:,} / at N={a.n:,}: {full['stream']['peak_mb'] / med['stream']['peak_mb']:.2f}")

if __name__ == '__main__': main()
