"""Bootstrap intervals of calibration: fastinterp's `bootstrap_calibration` against a plain Python loop over resamples.

Synthetic probabilities of an over-confident model (labels drawn from softmax(z / 2), probabilities softmax(z)),
float32, --n items x --c classes. fastinterp computes the per-item terms once and every resampled figure as a
matrix product of per-item counts; the loop indexes the probabilities with each resample and calls
`calibration_metrics` on it, over the same `resample_indices`.
Time: median of --runs runs of --resamples resamples; the loop runs --loop-resamples resamples per run and is scaled
per resample to --resamples (said in the table). Memory: the rise of a fresh process's peak RSS over its RSS once
the data are built (the peak reset there through /proc/self/clear_refs), one process per number of resamples: it
should be flat in the number of resamples.
Run: .venv/bin/python bench/bench_bootstrap.py [--runs 3] [--n 100000] [--c 100] [--memory 100,1000,4000]
"""
import argparse, json, resource, statistics, subprocess, sys, time, warnings
warnings.filterwarnings('ignore')

import numpy as np, torch

def rss_mb():
    "Peak RSS in MB: Linux's VmHWM (ru_maxrss of a process started by a large one may start at its parent's peak)"
    try:
        with open('/proc/self/status') as f: return next(int(l.split()[1]) for l in f if l.startswith('VmHWM')) / 1024
    except (OSError, StopIteration): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def reset_peak():
    "The peak RSS set back to the current RSS (Linux 4.0+), so that the data's own temporaries are not the peak"
    try:
        with open('/proc/self/clear_refs', 'w') as f: f.write('5')
    except OSError: pass  # elsewhere the rise is over the peak of building the data: a lower bound

def data(n, c, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g) * 3
    y = torch.multinomial(torch.softmax(z / 2, 1), 1, generator=g)[:, 0]
    return torch.softmax(z, 1), y

def loop(p, y, n_resamples, seed=0, ci=0.95):
    "The plain way: each resample's rows gathered and measured, then numpy's percentiles"
    from fastinterp.calibration import calibration_metrics
    from fastinterp.intervals import resample_indices
    vals = [calibration_metrics(p[row], y[row]) for idx in resample_indices(len(p), n_resamples, seed) for row in idx]
    a = 1 - ci
    return {k: tuple(np.percentile([v[k] for v in vals], [50 * a, 100 - 50 * a])) for k in vals[0]}

def child(n, c, n_resamples):
    "One fresh process: the data, then one bootstrap; its time and the rise of the peak RSS"
    torch.set_num_threads(2)
    from fastinterp.intervals import bootstrap_calibration
    p, y = data(n, c)
    reset_peak()
    base = rss_mb()
    t0 = time.perf_counter(); bootstrap_calibration(p, y, n_resamples=n_resamples); t = time.perf_counter() - t0
    print(json.dumps({'time': t, 'peak_mb': rss_mb() - base}))

def measure(n, c, n_resamples):
    r = subprocess.run([sys.executable, __file__, '--child', str(n_resamples), '--n', str(n), '--c', str(c)],
                       capture_output=True, text=True)
    if r.returncode: raise RuntimeError(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])

def main(a):
    torch.set_num_threads(2)
    from fastinterp.intervals import bootstrap_calibration
    p, y = data(a.n, a.c)
    print(f"bootstrap_calibration: {a.n:,} items x {a.c:,} classes (float32), 15 bins, 95% CI, 2 torch threads\n")
    fast = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        bootstrap_calibration(p, y, n_resamples=a.resamples)
        fast.append(time.perf_counter() - t0)
    slow = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        ref = loop(p, y, a.loop_resamples)
        slow.append(time.perf_counter() - t0)
    t_fast, t_slow = statistics.median(fast), statistics.median(slow) / a.loop_resamples * a.resamples
    got = bootstrap_calibration(p, y, n_resamples=a.loop_resamples)
    diff = max(abs(g - r) for k in got for g, r in zip(got[k], ref[k]))
    print(f"{'method':<44}{f'time, {a.resamples:,} resamples':>24}{'per resample':>15}")
    print(f"{'fastinterp bootstrap_calibration':<44}{t_fast:>22.2f} s{t_fast / a.resamples * 1e3:>12.2f} ms")
    print(f"{'Python loop: index + calibration_metrics *':<44}{t_slow:>22.2f} s{t_slow / a.resamples * 1e3:>12.2f} ms")
    print(f"* {a.loop_resamples} resamples per run, scaled per resample to {a.resamples:,}; medians of {a.runs} runs")
    print(f"loop / fastinterp time: {t_slow / t_fast:.1f}x")
    print(f"the same {a.loop_resamples} resamples both ways: largest difference of an interval's end {diff:.1e}\n")
    counts = [int(v) for v in a.memory.split(',')]
    print(f"peak RSS rise, a fresh process per setting (the {a.n:,} x {a.c:,} probabilities are "
          f"{p.numel() * 4 / 2 ** 20:,.0f} MB)")
    print(f"{'n_resamples':>12}{'time':>10}{'peak RSS rise':>16}")
    mem = {}
    for r in counts:
        m = measure(a.n, a.c, r)
        mem[r] = m['peak_mb']
        print(f"{r:>12,}{m['time']:>9.2f}s{m['peak_mb']:>13.1f} MB")
    lo, hi = counts[0], counts[-1]
    print(f"peak RSS rise at {hi:,} / at {lo:,} resamples: {mem[hi] / max(mem[lo], 0.1):.2f}")

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--n', type=int, default=100_000)
    ap.add_argument('--c', type=int, default=100)
    ap.add_argument('--resamples', type=int, default=1000)
    ap.add_argument('--loop-resamples', type=int, default=50)
    ap.add_argument('--memory', default='100,1000,4000')
    ap.add_argument('--child', type=int)
    a = ap.parse_args()
    if a.child: child(a.n, a.c, a.child)
    else: main(a)
