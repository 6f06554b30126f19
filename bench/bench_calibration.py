"""Calibration before and after temperature scaling, and the cost of `calibrate` and of MC dropout.

Learners, each trained to over-confidence by over-fitting (a small training split, many epochs at a constant
learning rate, no weight decay), plus the usual digits recipe for comparison:
- digits CNN on fastai's vision pipeline (PNG folder), trained on 10% of the digits (180 images) for 300 epochs
  (no validation during training, to save time);
- the same CNN with the usual recipe: 80% of the digits, fit_one_cycle for 10 epochs (already well calibrated);
- an MLP on 300 digits as tensors (plain `Learner`), 100 epochs.
The held-out set is split in two halves: T is fitted on one half and ECE, MCE, NLL, Brier and accuracy are measured
on the other, then the halves are swapped; the table shows the mean of the two folds.
Timing: medians of --runs runs of `calibrate` and of `mc_dropout(n)` against one `get_preds` over the same data.
Run: .venv/bin/python bench/bench_calibration.py [--runs 5] [--mc 20]
"""
import argparse, statistics, tempfile, time, warnings
from pathlib import Path
warnings.filterwarnings('ignore')

import numpy as np, pandas as pd, torch, torch.nn as nn
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner
from fastai.callback.core import Callback, CancelValidException
from fastai.torch_core import set_seed
import fastinterp  # noqa: F401 -- patches fastai: probabilities from get_preds, and Learner.calibrate
from fastinterp.calibration import calibration_metrics
from fastinterp.uncertainty import mc_dropout
from fastinterp.data import digits_folder, digits_learner

def timed(f):
    t = time.perf_counter(); f(); return time.perf_counter() - t

class SkipValidation(Callback):
    def before_validate(self): raise CancelValidException

def cnn(valid_pct, epochs, one_cycle):
    path = digits_folder(Path(tempfile.gettempdir())/f'fastinterp-digits-{int(valid_pct * 100)}', valid_pct=valid_pct)
    learn = digits_learner(path, wd=0. if not one_cycle else None)
    with learn.no_bar(), learn.no_logging():
        if one_cycle: learn.fit_one_cycle(epochs, 1e-2)
        else: learn.fit(epochs, 1e-2, cbs=SkipValidation())
    items = np.array(learn.dls.valid.items, dtype=object)
    halves = np.array_split(np.random.default_rng(0).permutation(len(items)), 2)
    return learn, [learn.dls.test_dl(list(items[h]), with_labels=True) for h in halves]

def mlp(epochs):
    from sklearn.datasets import load_digits
    d = load_digits()
    perm = torch.randperm(len(d.target), generator=torch.Generator().manual_seed(0))
    X, y = torch.tensor(d.data / 16, dtype=torch.float32)[perm], torch.tensor(d.target)[perm]
    set_seed(0)
    train, held = list(zip(X[:300], y[:300])), list(zip(X[300:], y[300:]))
    dls = DataLoaders(DataLoader(train, bs=32, shuffle=True), DataLoader(held, bs=512))
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))
    learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), wd=0.)
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs, 1e-2)
    half = len(held) // 2
    return learn, [DataLoader(held[:half], bs=512), DataLoader(held[half:], bs=512)]

def two_folds(learn, halves):
    "Mean over the two folds of the figures on the half T was not fitted on, at T = 1 and at the fitted T"
    rows, Ts = {'before': [], 'after': []}, []
    for fit_on, test_on in ((0, 1), (1, 0)):
        with learn.no_bar():
            learn.temperature = None
            p, t = learn.get_preds(dl=halves[test_on])
            rows['before'].append(calibration_metrics(p, t))
            learn.calibrate(dl=halves[fit_on], quiet=True)
            Ts.append(learn.temperature)
            p, _ = learn.get_preds(dl=halves[test_on])
            rows['after'].append(calibration_metrics(p, t))
    learn.temperature = None
    return {k: pd.DataFrame(v).mean() for k, v in rows.items()}, Ts, sum(len(h.dataset) for h in halves)

def cost(learn, dl, runs, n_mc):
    "Median times of get_preds, calibrate and mc_dropout(n_mc) over `dl`"
    t = {'get_preds': [], 'calibrate': [], 'mc': []}
    with learn.no_bar():
        learn.get_preds(dl=dl)  # warm up
        for _ in range(runs):
            t['get_preds'].append(timed(lambda: learn.get_preds(dl=dl)))
            t['calibrate'].append(timed(lambda: learn.calibrate(dl=dl, quiet=True)))
            t['mc'].append(timed(lambda: mc_dropout(learn, n_mc, dl=dl)))
    learn.temperature = None
    return {k: statistics.median(v) for k, v in t.items()}

def main(runs, n_mc):
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; calibration: mean of 2 folds (fit T on "
          f"one half of the held-out set, measure on the other); timing: medians of {runs} runs\n")
    cases = [('digits CNN, 10% train, 300 epochs fit (over-fit)', lambda: cnn(0.9, 300, False)),
             ('digits CNN, 80% train, 10 epochs fit_one_cycle (usual)', lambda: cnn(0.2, 10, True)),
             ('MLP, 300 digits, 100 epochs fit (over-fit)', lambda: mlp(100))]
    for name, make in cases:
        learn, halves = make()
        figs, Ts, n = two_folds(learn, halves)
        print(f"{name}: {n:,} held-out items, T = {Ts[0]:.3f} / {Ts[1]:.3f} (fitted on each half)")
        table = pd.DataFrame(figs).T[['ece', 'mce', 'nll', 'brier', 'accuracy']]
        print(table.to_string(float_format=lambda x: f'{x:.4f}'))
        c = cost(learn, learn.dls.valid, runs, n_mc)
        print(f"  cost over the {len(learn.dls.valid.dataset):,} held-out items: get_preds "
              f"{c['get_preds']*1e3:.1f} ms, calibrate {c['calibrate']*1e3:.1f} ms "
              f"({c['calibrate']/c['get_preds']:.2f}x), mc_dropout(n={n_mc}) {c['mc']*1e3:.1f} ms "
              f"({c['mc']/c['get_preds']:.2f}x one get_preds, {c['mc']/(n_mc*c['get_preds']):.2f}x {n_mc} of them)\n")

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--runs', type=int, default=5)
    ap.add_argument('--mc', type=int, default=20)
    a = ap.parse_args()
    main(a.runs, a.mc)
