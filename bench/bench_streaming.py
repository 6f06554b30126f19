"""Streaming interpretation at scale: peak memory and items/s of StreamingStats against a bare softmax + top-k loop.

Synthetic logits (N x C, float32) are generated batch by batch from a per-batch seed and never held whole.
- bare: softmax, then the running top k of the items by confidence (torch.topk over kept + batch)
- stream: softmax, then StreamingStats.update (confusion and calibration counts, Brier and NLL sums, per-class counts,
  exact top k by loss and by each of the four uncertainty measures, kept with their probability rows)
- generate: only making the batches (logits, targets and per-item cross-entropy, which fastai's validation loop
  computes whatever callbacks run), which every loop pays
Each run is a fresh process with one torch thread; time is the process's CPU time (steadier than wall time on a
shared machine; both are printed); memory is the rise of its peak RSS (getrusage ru_maxrss) over its state after
start-up, so it counts torch's C allocations (tracemalloc would not see them). Prints medians over --runs runs
at --n items and one run at --n-full items (0: skip it).
Run: .venv/bin/python bench/bench_streaming.py [--runs 5] [--n 200000] [--n-full 2000000]
"""
import argparse, json, resource, statistics, subprocess, sys, time

def rss_mb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def batches(n, c, bs, boost, seed=0):
    "(first item, logits, targets, per-item losses) for n items, each batch from its own seed: the same in every loop"
    import torch, torch.nn.functional as F
    for i, start in enumerate(range(0, n, bs)):
        g = torch.Generator().manual_seed(seed + i)
        b = min(bs, n - start)
        targs = torch.randint(0, c, (b,), generator=g)
        logits = torch.randn(b, c, generator=g) * 2
        # the target's logit raised by N(boost, 3): boost 10 is right on ~83% of 1,000 classes (ImageNet-like),
        # 4 on ~12%
        logits[torch.arange(b), targs] += boost + 3 * torch.randn(b, generator=g) * (boost > 4)
        # the loss comes with the batch, as in fastai's validation loop, which computes `learn.loss` whatever
        # callbacks run
        yield start, logits, targs, F.cross_entropy(logits, targs, reduction='none')

def run(case, n, c, bs, k, boost):
    import torch
    torch.set_num_threads(1)
    if case == 'stream':
        from fastinterp.stats import StreamingStats
        stats = StreamingStats(c, k)
        def step(start, logits, targs, losses):
            stats.update(logits.softmax(1), targs, losses, torch.arange(start, start + len(targs)))
    elif case == 'bare':
        kept = torch.empty(0)
        def step(start, logits, targs, losses):
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
    r = subprocess.run([sys.executable, __file__, '--child', case, '--n', str(n), '--c', str(a.c), '--bs', str(a.bs),
                        '--k', str(a.k), '--boost', str(a.boost)],
                       capture_output=True, text=True)
    if r.returncode: sys.exit(f"{case} at n={n} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])

def report(title, r):
    "One table: CPU time (what the ratios use), wall time, items/s, peak RSS rise; then the ratios"
    print(title)
    print(f"{'case':<10}{'CPU time':>10}{'wall':>9}{'items/s':>11}{'peak RSS rise':>15}")
    for c, x in r.items():
        print(f"{c:<10}{x['time']:>9.2f}s{x['wall']:>8.2f}s{x['items_per_s']:>11,.0f}{x['peak_mb']:>12.1f} MB")
    gen, bare, st = (r[c]['time'] for c in ('generate', 'bare', 'stream'))
    print(f"stream / bare CPU time: {st / bare:.2f} with the generation of the batches, "
          f"{(st - gen) / (bare - gen):.2f} without it\n")

def main():
    p = argparse.ArgumentParser()
    p.add_argument('--runs', type=int, default=5); p.add_argument('--n', type=int, default=200_000)
    p.add_argument('--n-full', type=int, default=2_000_000); p.add_argument('--c', type=int, default=1000)
    p.add_argument('--bs', type=int, default=1000); p.add_argument('--k', type=int, default=100)
    p.add_argument('--boost', type=float, default=10,
                   help="mean raise of the target's logit: 10 is ImageNet-like, 4 a poor model")
    p.add_argument('--child')
    a = p.parse_args()
    if a.child: return print(json.dumps(run(a.child, a.n, a.c, a.bs, a.k, a.boost)))
    cases = ('generate', 'bare', 'stream')
    res = {c: [] for c in cases}
    for _ in range(a.runs):  # interleaved, so a busy spell of the machine hits every case alike
        for c in cases: res[c].append(measure(c, a.n, a))
    med = {c: {f: statistics.median(r[f] for r in rs) for f in rs[0]} for c, rs in res.items()}
    print(f"C={a.c:,} classes, batches of {a.bs}, k={a.k}, 1 thread; synthetic classifier: "
          f"accuracy {med['stream']['accuracy']:.1%}, mean confidence {med['stream']['mean_confidence']:.1%}\n")
    report(f"N={a.n:,}: median of {a.runs} runs, each in a fresh process", med)
    if not a.n_full: return
    full = {c: measure(c, a.n_full, a) for c in cases}
    report(f"N={a.n_full:,}: one run each (the N x C logits whole would take "
           f"{a.n_full * a.c * 4 / 2**30:.1f} GiB as float32)", full)
    print(f"stream peak RSS rise at N={a.n_full:,} over that at N={a.n:,}: "
          f"{full['stream']['peak_mb'] / med['stream']['peak_mb']:.2f}")

if __name__ == '__main__': main()
