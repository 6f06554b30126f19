"""Scale: time and peak memory per N of the in-memory and streamed interpretations, with log-log slopes.

A plain-PyTorch learner (a linear model, 8 features, C = 100 classes, nn.CrossEntropyLoss) over a fastai
DataLoader of N synthetic items, for N = 10,000 / 100,000 / 1,000,000 (--sizes). Each case runs in a fresh process:
- bare: a `torch.no_grad()` loop of the model over the same batches (the limit: data loading and the forward pass),
  under `gc_frozen` as fastinterp's passes are (Python's full sweeps of every object would add a quarter at 1,000,000)
- stock: stock fastai's `get_preds` on the same loader (probabilities, targets, losses)
- memory: `ClassificationInterpretation.from_learner`, then each view in turn (top_losses, most_uncertain,
  confusion_matrix, most_confused, per_class, most_correct, most_incorrect, calibration, to_df)
- streaming: `from_learner(streaming=True)`, then its views
- stats: `StreamingStats` updated in a user's own loop over the same batches (a torch DataLoader), under `gc_frozen`
Memory is the rise of the process's peak RSS (VmHWM, reset through /proc/self/clear_refs before each step) over its
RSS before the build, so torch's C allocations count (tracemalloc does not see them). Time is wall time, median of
--runs runs per N (views: median of their repeats in one process). Slope: log-log over the smallest and largest N.
Run: .venv/bin/python bench/bench_scale.py [--sizes 10000,100000,1000000] [--runs 3] [--fixed-malloc]
"""
import argparse, gc, json, math, os, statistics, subprocess, sys, time, warnings
warnings.filterwarnings('ignore')

C, D, BS = 100, 8, 1024

def rss_mb():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS'): return int(line.split()[1]) / 1024

def reset_peak(): open('/proc/self/clear_refs', 'w').write('5')  # VmHWM back to the current RSS

def peak_mb():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM'): return int(line.split()[1]) / 1024

def learner(n):
    import torch, torch.nn as nn
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner
    g = torch.Generator().manual_seed(0)
    w = torch.randn(D, C, generator=g)
    x = torch.randn(n, D, generator=g)
    y = (x @ w + 4 * torch.randn(n, C, generator=g)).argmax(1)  # about 40% right for the true weights

    class Items(torch.utils.data.Dataset):
        def __len__(self): return n
        def __getitem__(self, i): return x[i], y[i]
    ds = Items()
    dls = DataLoaders(DataLoader(ds, bs=BS), DataLoader(ds, bs=BS))
    model = nn.Linear(D, C)
    with torch.no_grad(): model.weight.copy_(w.T)
    return Learner(dls, model, loss_func=nn.CrossEntropyLoss())

VIEWS = {'top_losses': lambda it: it.top_losses(9), 'most_uncertain': lambda it: it.most_uncertain(9),
         'confusion_matrix': lambda it: it.confusion_matrix(), 'most_confused': lambda it: it.most_confused(),
         'per_class': lambda it: it.per_class(), 'most_correct': lambda it: it.most_correct(3, 9),
         'most_incorrect': lambda it: it.most_incorrect(3, 9), 'calibration': lambda it: it.calibration(),
         'to_df': lambda it: it.to_df()}
STREAMED = ('top_losses', 'most_uncertain', 'confusion_matrix', 'most_confused', 'per_class', 'calibration')

def timed(f, repeats=1):
    """Median wall time of `f` over `repeats` runs, the peak RSS rise over the RSS before, and f's last result. The
    garbage is collected before each run: the first full collection after the imports (some 0.15 s) would otherwise
    land in whichever pass runs first"""
    base = rss_mb(); reset_peak()
    ts = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter(); res = f(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts), peak_mb() - base, res

def child(case, n):
    import torch
    torch.set_num_threads(2)
    import fastinterp
    from fastinterp import ClassificationInterpretation, StreamingStats
    from fastinterp.passes import gc_frozen
    learn = learner(n)
    dl = learn.dls.valid
    learn.model.eval()
    out = {}
    if case == 'bare':
        def run():
            with torch.no_grad(), gc_frozen():  # as fastinterp's passes: no full sweeps of the process's objects
                for xb, yb in dl: learn.model(xb)
    elif case == 'stock':
        fastinterp.unpatch()
        def run():
            return learn.get_preds(dl=dl, with_loss=True)  # fastai's progress bar is not loaded: none to hide
    elif case in ('memory', 'streaming'):
        def run():
            return ClassificationInterpretation.from_learner(learn, dl=dl, streaming=case == 'streaming',
                                                             progress=False)
    elif case == 'stats':
        def run():
            stats, start = StreamingStats(C, k=100), 0
            with torch.no_grad(), gc_frozen():  # as the README suggests for a long loop of your own
                # a torch DataLoader of the same batches: fastai's would list every index at each pass
                for xb, yb in torch.utils.data.DataLoader(dl.dataset, batch_size=BS):
                    out = learn.model(xb)
                    losses = torch.nn.functional.cross_entropy(out, yb, reduction='none')
                    stats.update(out.softmax(1), yb, losses, torch.arange(start, start + len(yb)))
                    start += len(yb)
            return stats.compute()
    before = rss_mb()
    t, mem, res = timed(run)
    out['build'] = {'time': t, 'peak_mb': mem}
    if case in ('memory', 'streaming'):
        base = rss_mb(); reset_peak()
        out['held_mb'] = base - before  # what the interpretation keeps
        for name in (VIEWS if case == 'memory' else STREAMED):
            t, m, _ = timed(lambda: VIEWS[name](res), repeats=3 if name != 'to_df' else 1)
            out[name] = {'time': t, 'peak_mb': m}
        out['all views'] = {'time': sum(v['time'] for k, v in out.items() if isinstance(v, dict) and k != 'build'),
                            'peak_mb': peak_mb() - base}
        if case == 'memory':
            out['probs_mb'] = res.probs.numel() * res.probs.element_size() / 2**20
    print(json.dumps(out))

# --fixed-malloc: every block of 128 kB or more its own mapping, returned to the system when freed, so the peak RSS
# rise is the memory the code holds; glibc's default keeps freed blocks below a sliding threshold in its heap, and the
# rise then moves by a few MB from run to run, whatever N (times are slower: each such block is mapped afresh)
FIXED_MALLOC = {'MALLOC_MMAP_THRESHOLD_': str(128 * 1024)}

def measure(case, n, fixed_malloc=False):
    env = {**os.environ, **(FIXED_MALLOC if fixed_malloc else {})}
    r = subprocess.run([sys.executable, __file__, '--child', case, '--n', str(n)], capture_output=True, text=True,
                       env=env)
    if r.returncode: sys.exit(f"{case} at n={n} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])

def slope(xs, ys):
    if len(xs) < 2 or not (ys[0] > 0 and ys[-1] > 0): return float('nan')  # one size (--sizes 10000): no slope
    return math.log(ys[-1] / ys[0]) / math.log(xs[-1] / xs[0])

def main():
    p = argparse.ArgumentParser()
    p.add_argument('--sizes', default='10000,100000,1000000'); p.add_argument('--runs', type=int, default=3)
    p.add_argument('--cases', default='bare,stock,memory,streaming,stats')
    p.add_argument('--fixed-malloc', action='store_true', help='children with a fixed malloc threshold: memory held')
    p.add_argument('--child'); p.add_argument('--n', type=int)
    a = p.parse_args()
    if a.child: return child(a.child, a.n)
    sizes, cases = [int(s) for s in a.sizes.split(',')], a.cases.split(',')
    res = {}
    for n in sizes:
        # interleaved: a busy spell hits all alike
        runs = [{c: measure(c, n, a.fixed_malloc) for c in cases} for _ in range(a.runs)]
        res[n] = {c: {step: ({f: statistics.median(r[c][step][f] for r in runs) for f in v} if isinstance(v, dict)
                             else v) for step, v in runs[0][c].items()} for c in cases}
    print(f"C={C} classes, {D} features, batches of {BS}, 2 threads; wall time median of {a.runs} runs per N, "
          f"peak RSS rise in MB" + (" (fixed malloc threshold: the memory held)" if a.fixed_malloc else "") + "\n")
    head = ''.join(f"{n:>22,}" for n in sizes)
    for c in cases:
        print(f"{c}\n{'step':<18}{head}{'slope t':>9}{'slope mem':>10}")
        for step in res[sizes[0]][c]:
            if not isinstance(res[sizes[0]][c][step], dict): continue
            ts = [res[n][c][step]['time'] for n in sizes]
            ms = [res[n][c][step]['peak_mb'] for n in sizes]
            cells = ''.join(f"{t * 1e3:>11,.1f} ms{m:>8.1f}" for t, m in zip(ts, ms))
            print(f"{step:<18}{cells}{slope(sizes, ts):>9.2f}{slope(sizes, [max(m, 1e-3) for m in ms]):>10.2f}")
        print()
    for n in sizes:
        r = res[n]
        line = [f"N={n:,}:"]
        if 'bare' in r and 'stock' in r:
            line.append(f"stock/bare {r['stock']['build']['time'] / r['bare']['build']['time']:.2f}")
        for c in ('memory', 'streaming', 'stats'):
            if c not in r: continue
            if 'stock' in r and c != 'stats':
                line.append(f"{c} build/stock {r[c]['build']['time'] / r['stock']['build']['time']:.3f}")
            if 'bare' in r: line.append(f"{c}/bare {r[c]['build']['time'] / r['bare']['build']['time']:.2f}")
        if 'memory' in r:
            m = r['memory']
            peak = max(m['build']['peak_mb'], m['all views']['peak_mb'] + m['held_mb'])
            line.append(f"in-memory peak of build and views / probs {peak / m['probs_mb']:.2f}")
        print(' · '.join(line))
    big, small = sizes[-1], sizes[-2] if len(sizes) > 1 else sizes[-1]
    for c in ('streaming', 'stats'):
        if c in res[big]:
            print(f"{c}: peak RSS rise of the build at N={big:,} over N={small:,}: "
                  f"{res[big][c]['build']['peak_mb'] / res[small][c]['build']['peak_mb']:.2f}")

if __name__ == '__main__': main()
