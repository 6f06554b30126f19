"""Time and peak memory of fastinterp's ClassificationInterpretation against fastai 2.8's stock class.

1. On the digits learner: build the interpretation, then confusion_matrix + most_confused +
   classification report + top_losses (stock fastai re-runs inference for three of those).
2. confusion_matrix alone on synthetic predictions (20,000 x 200 and 50,000 x 1,000): fastinterp counts
   with bincount; fastai builds an N x C x C boolean tensor.
Each case runs in a fresh process; peak memory is the rise of the process's peak RSS over its
state right before the case. Prints medians of --runs runs and the ratios.
Run: .venv/bin/python bench/bench_interpret.py [--runs 5]
"""
import argparse, contextlib, io, json, resource, statistics, subprocess, sys, tempfile, time, warnings
from pathlib import Path
warnings.filterwarnings('ignore')

def rss_mb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def digits(which):
    import fastai.interpret
    import fastinterp
    from fastinterp.interpret import ClassificationInterpretation
    from fastinterp.data import digits_folder, digits_learner
    from fastai.losses import CrossEntropyLossFlat
    # fastai's own loss: with a plain nn.CrossEntropyLoss stock fastai's confusion_matrix crashes (decoded = logits)
    path = digits_folder(Path(tempfile.gettempdir())/'fastinterp-digits')
    learn = digits_learner(path, loss_func=CrossEntropyLossFlat())
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, 1e-2)
    if which == 'stock': fastinterp.unpatch()  # else fastai's class hands out fastinterp's
    cls = ClassificationInterpretation if which == 'fastinterp' else fastai.interpret.ClassificationInterpretation
    def run():
        with learn.no_bar(), contextlib.redirect_stdout(io.StringIO()):
            it = cls.from_learner(learn)
            it.confusion_matrix(); it.most_confused(); it.print_classification_report(); it.top_losses(9)
    return run

def confusion(which, n, c):
    import numpy as np, torch
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, c, (n,), generator=g)
    d = torch.where(torch.rand(n, generator=g) < 0.7, t, torch.randint(0, c, (n,), generator=g))
    if which == 'fastinterp':
        # as ClassificationInterpretation.confusion_matrix counts
        def run(): return np.bincount(t.numpy() * c + d.numpy(), minlength=c*c).reshape(c, c)
    else:
        x = torch.arange(0, c)
        def run(): return ((d==x[:,None]) & (t==x[:,None,None])).long().sum(2)  # fastai 2.8's formula
    return run

def child(case, which, runs):
    import torch; torch.set_num_threads(2)
    kind, *args = case.split(':')
    run = digits(which) if kind == 'digits' else confusion(which, *map(int, args))
    base = rss_mb()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter(); run(); times.append(time.perf_counter() - t0)
    print(json.dumps({'time': statistics.median(times), 'peak_mb': rss_mb() - base}))

def measure(case, which, runs):
    r = subprocess.run([sys.executable, __file__, '--child', case, which, '--runs', str(runs)],
                       capture_output=True, text=True)
    if r.returncode: return None
    return json.loads(r.stdout.strip().splitlines()[-1])

def fastai_cm_bytes(n, c): return n * c * c * (1 + 8)  # the bool tensor, then its .long() copy

def main(runs):
    print(f"medians of {runs} runs, each case in a fresh process, 2 threads")
    for case, label in [('digits', 'digits CNN: build + confusion + most_confused + report + top_losses'),
                        ('cm:20000:200', 'confusion_matrix, 20,000 x 200 classes'),
                        ('cm:50000:1000', 'confusion_matrix, 50,000 x 1,000 classes')]:
        ours = measure(case, 'fastinterp', runs)
        if case.startswith('cm') and fastai_cm_bytes(*map(int, case.split(':')[1:])) > 12 * 2**30:
            need = fastai_cm_bytes(*map(int, case.split(':')[1:])) / 2**30
            print(f"{label:<70} fastinterp {ours['time']*1e3:9.2f} ms {ours['peak_mb']:8.1f} MB | "
                  f"fastai: needs {need:,.0f} GiB, not run on a 24 GiB machine")
            continue
        stock = measure(case, 'stock', runs)
        mem = max(ours['peak_mb'], 0.1) / max(stock['peak_mb'], 0.1)
        print(f"{label:<70} fastinterp {ours['time']*1e3:9.2f} ms {ours['peak_mb']:8.1f} MB | "
              f"fastai {stock['time']*1e3:9.2f} ms {stock['peak_mb']:8.1f} MB | "
              f"time ratio {ours['time']/stock['time']:.4f}, memory ratio {mem:.4f}")

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--runs', type=int, default=5)
    ap.add_argument('--child', nargs=2)
    a = ap.parse_args()
    if a.child: child(*a.child, a.runs)
    else: main(a.runs)
