"""Segmentation: the interpretation's memory and time against keeping the probabilities and a bare pass; TTA's IoU.

Part 1, scale: --n images (2,000) of 64 x 64 pixels, 11 classes, as in-memory tensors behind a fastai DataLoader
(bs 32), `digits_unet` (untrained: speed and memory do not depend on the weights). Each case in a fresh process:
- bare: a `torch.no_grad()` loop of the model over the same batches (the limit: the forward pass)
- stock: stock fastai's `get_preds` (it keeps every N x C x H x W probability, and the targets)
- interp: `SegmentationInterpretation.from_learner` (one pass, counting), then iou, confusion_matrix, top_losses,
  most_uncertain and calibration
Memory: the rise of the process's peak RSS (VmHWM, reset through /proc/self/clear_refs) over its RSS once the data
are built. Time: wall time, median of --runs runs, the cases interleaved run by run.
Part 2, TTA: the digit masks (`digits_masks`, 32 x 32, all 1,797, 20% valid), `digits_seg_learner` trained with
`fit_one_cycle(--epochs, 1e-2)`; mean IoU, pixel accuracy and NLL of the un-augmented pass, of each undone flip
or rotation, and of TTA (mean of 4 passes blended with the plain one, beta 0.25), from `Learner.tta`'s report.
Run: .venv/bin/python bench/bench_segmentation.py [--n 2000] [--runs 3] [--epochs 6] [--skip-tta]
"""
import argparse, json, statistics, subprocess, sys, tempfile, time, warnings
warnings.filterwarnings('ignore')
from pathlib import Path

SIZE, C, BS = 64, 11, 32

def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key): return int(line.split()[1]) / 1024

def learner(n):
    import torch, torch.nn as nn
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner
    from fastinterp.data import digits_unet
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, SIZE, SIZE, generator=g)
    y = torch.randint(0, C, (n, SIZE, SIZE), generator=g)

    class Items(torch.utils.data.Dataset):
        def __len__(self): return n
        def __getitem__(self, i): return x[i], y[i]
    dls = DataLoaders(DataLoader(Items(), bs=BS), DataLoader(Items(), bs=BS))
    return Learner(dls, digits_unet(n_classes=C), loss_func=nn.CrossEntropyLoss())

def child(case, n):
    import torch
    torch.set_num_threads(2)
    import fastinterp
    from fastinterp.patching import stock
    from fastai.learner import Learner
    import fastai.callback.progress  # noqa: F401 (Learner.no_bar)
    learn = learner(n)
    learn.model.eval()
    dl = learn.dls.valid
    base = status('VmRSS'); open('/proc/self/clear_refs', 'w').write('5')
    t0 = time.perf_counter()
    if case == 'bare':
        with torch.no_grad():
            for xb, _ in dl: learn.model(xb)
    elif case == 'stock':
        with learn.no_bar(): stock(Learner, 'get_preds')(learn, dl=dl)
    else:
        with learn.no_bar(): it = fastinterp.SegmentationInterpretation.from_learner(learn, dl=dl, progress=False)
        it.iou(); it.confusion_matrix(); it.top_losses(9); it.most_uncertain(9); it.calibration()
    print(json.dumps({'time': time.perf_counter() - t0, 'peak_mb': status('VmHWM') - base}))

def measure(case, n):
    r = subprocess.run([sys.executable, __file__, '--child', case, '--n', str(n)], capture_output=True, text=True)
    if r.returncode: raise RuntimeError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])

def scale(a):
    probs_mb = a.n * C * SIZE * SIZE * 4 / 2 ** 20
    print(f"{a.n:,} images {SIZE} x {SIZE}, {C} classes (their probabilities: {probs_mb:,.0f} MB), digits_unet, "
          f"bs {BS}, 2 torch threads; medians of {a.runs} runs, a fresh process each\n")
    runs = [{c: measure(c, a.n) for c in ('bare', 'stock', 'interp')} for _ in range(a.runs)]  # interleaved: a
    res = {c: [r[c] for r in runs] for c in ('bare', 'stock', 'interp')}  # busy spell hits all cases alike
    med = {c: {k: statistics.median(r[k] for r in rs) for k in ('time', 'peak_mb')} for c, rs in res.items()}
    names = {'bare': 'bare torch.no_grad() loop', 'stock': "stock fastai get_preds (keeps the probabilities)",
             'interp': 'SegmentationInterpretation + views'}
    print("| | time | vs bare | peak RSS rise | vs the probabilities |\n|---|---:|---:|---:|---:|")
    for c in ('bare', 'stock', 'interp'):
        m = med[c]
        print(f"| {names[c]} | {m['time']:.2f} s | {m['time'] / med['bare']['time']:.2f} | {m['peak_mb']:.0f} MB | "
              f"{m['peak_mb'] / probs_mb:.2f} |")
    spread = lambda c: ', '.join(f"{r['time']:.2f}" for r in res[c])
    print(f"\ntimes per run: bare {spread('bare')}; stock {spread('stock')}; interp {spread('interp')} s")

def tta(a):
    import torch
    torch.set_num_threads(2)
    import fastinterp  # noqa: F401
    import fastai.callback.progress  # noqa: F401 (Learner.no_bar)
    from fastinterp.data import digits_masks, digits_seg_learner
    path = digits_masks(Path(tempfile.mkdtemp())/'masks', size=32)
    learn = digits_seg_learner(path)
    t0 = time.perf_counter()
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(a.epochs, 1e-2)
    fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = learn.tta(n=4, progress=False)
    t = time.perf_counter() - t0
    print(f"\nTTA on the digit masks (32 x 32, {len(learn.dls.valid.dataset)} valid images, 11 classes), digits_unet "
          f"trained {a.epochs} epochs ({fit:.0f} s); tta(n=4) {t:.1f} s\n")
    print("| pass | pixel accuracy | NLL | mean IoU |\n|---|---:|---:|---:|")
    for name, r in res.report.iterrows():
        print(f"| {name} | {r['accuracy']:.4f} | {r['nll']:.4f} | {r['mean_iou']:.4f} |")

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--n', type=int, default=2000)
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--epochs', type=int, default=6)
    ap.add_argument('--skip-tta', action='store_true')
    ap.add_argument('--child')
    a = ap.parse_args()
    if a.child: child(a.child, a.n)
    else:
        scale(a)
        if not a.skip_tta: tta(a)
