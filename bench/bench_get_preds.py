"""Time fastinterp's `get_preds` against stock fastai's on the same learner and data.

Prints the median of several alternating runs of each and their ratio (patched / stock).
Run: .venv/bin/python bench/bench_get_preds.py [--runs 9]
"""
import argparse, statistics, tempfile, time, warnings
from pathlib import Path
warnings.filterwarnings('ignore')

import torch, torch.nn as nn
from fastai.data.load import DataLoader
from fastai.data.core import DataLoaders
from fastai.learner import Learner
import fastinterp  # noqa: F401 -- patches fastai: get_preds through the registry
from fastinterp.data import digits_folder, digits_learner
from fastinterp.preds import stock_get_preds

def timed(f):
    t = time.perf_counter(); f(); return time.perf_counter() - t

def softmax(x): return torch.softmax(x, 1)

def compare(name, learn, dl, runs, stock_kw=None, **kw):
    stock, ours = [], []
    skw = {**kw, **(stock_kw or {})}
    with learn.no_bar():
        stock_get_preds(learn, dl=dl, **skw); learn.get_preds(dl=dl, **kw)  # warm up
        for _ in range(runs):
            stock.append(timed(lambda: stock_get_preds(learn, dl=dl, **skw)))
            ours.append(timed(lambda: learn.get_preds(dl=dl, **kw)))
    s, o = statistics.median(stock), statistics.median(ours)
    print(f"{name:<48} stock {s*1e3:8.1f} ms   fastinterp {o*1e3:8.1f} ms   ratio {o/s:.3f}")
    return o / s

def main(runs):
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, medians of {runs} alternating runs")
    path = digits_folder(Path(tempfile.gettempdir())/'fastinterp-digits')
    learn = digits_learner(path)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, 1e-2)
    compare('digits CNN, valid set (359 PNGs)', learn, learn.dls.valid, runs)
    compare('digits CNN, valid set, with_decoded+with_loss', learn, learn.dls.valid, runs,
            with_decoded=True, with_loss=True)
    # a larger, cheap-to-load set: 20,000 items, 200 classes, an MLP
    torch.manual_seed(0)
    X, y = torch.randn(20_000, 64), torch.randint(0, 200, (20_000,))
    ds = list(zip(X, y))
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 200))
    mlp = Learner(DataLoaders(DataLoader(ds, bs=512), DataLoader(ds, bs=512)), model, loss_func=nn.CrossEntropyLoss())
    compare('MLP, 20,000 items x 200 classes', mlp, mlp.dls.valid, runs, with_decoded=True)
    # stock fastai applies no activation for a plain PyTorch loss; give it the softmax for a like-for-like figure
    compare('MLP, 20,000 x 200, stock given act=softmax', mlp, mlp.dls.valid, runs, stock_kw=dict(act=softmax))
    compare('MLP, 20,000 x 200, with_decoded, stock act=softmax', mlp, mlp.dls.valid, runs,
            stock_kw=dict(act=softmax), with_decoded=True)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--runs', type=int, default=9)
    main(ap.parse_args().runs)
