"""Peak memory and time of fastinterp's `Learner.tta` against fastai 2.8's stock `tta`.

A synthetic fastai learner: a `Datasets` of N feature vectors x C classes with a training-only noise
augmentation (a `Transform` with split_idx=0, so TTA's switch to training transforms applies it), an MLP,
and fastai's `CrossEntropyLossFlat` (stock fastai averages probabilities with it, so both do the same work).
Memory: each (implementation, n) runs in a fresh process; the figure is the rise of the process's peak
RSS over its state right before `tta` (stock holds n x N x C predictions, then a copy of them; fastinterp
one running N x C aggregate). Time: both in one process, alternating, median of --runs; on the synthetic learner
and on the digits CNN over its PNG folder with real `aug_transforms` (an image pipeline, where loading dominates).
Run: .venv/bin/python bench/bench_tta.py [--n-items 20000] [--classes 1000] [--runs 5]
"""
import argparse, json, resource, statistics, subprocess, sys, time, warnings
warnings.filterwarnings('ignore')

def rss_mb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def learner(n_items, n_classes, n_feat=64, seed=0):
    import torch, torch.nn as nn
    from fastai.data.core import Datasets
    from fastai.learner import Learner
    import fastai.callback.progress  # noqa: F401 -- Learner.no_bar and the bar it hides, as `fastai.vision.all` loads
    from fastai.losses import CrossEntropyLossFlat
    from fasttransform import Transform
    from fastai.torch_core import TensorBase  # the inputs' type: the noise leaves targets alone
    class Noise(Transform):
        split_idx, order = 0, 10  # training only: what TTA switches on
        def encodes(self, x:TensorBase): return x + 0.1 * torch.randn_like(x)
    g = torch.Generator().manual_seed(seed)
    X = TensorBase(torch.randn(2 * n_items, n_feat, generator=g))
    y = torch.randint(0, n_classes, (2 * n_items,), generator=g)
    splits = [list(range(n_items)), list(range(n_items, 2 * n_items))]
    dsets = Datasets(range(2 * n_items), tfms=[[X.__getitem__], [y.__getitem__]], splits=splits)
    dls = dsets.dataloaders(bs=512, after_batch=[Noise()], num_workers=0)
    model = nn.Sequential(nn.Linear(n_feat, 256), nn.ReLU(), nn.Linear(256, n_classes))
    return Learner(dls, model, loss_func=CrossEntropyLossFlat())

def child(which, n, n_items, n_classes):
    import torch; torch.set_num_threads(2)
    import fastinterp
    learn = learner(n_items, n_classes)
    if which == 'stock': fastinterp.unpatch()
    # warm up torch and the data pipeline on one batch
    with torch.no_grad(): learn.model(learn.dls.valid.one_batch()[0])
    base = rss_mb()
    with learn.no_bar(): p, _ = learn.tta(n=n)
    print(json.dumps({'peak_mb': rss_mb() - base, 'row_sum_err': float((p.sum(1) - 1).abs().max())}))

def memory(which, n, n_items, n_classes):
    r = subprocess.run([sys.executable, __file__, '--child', which, str(n), '--n-items', str(n_items),
                        '--classes', str(n_classes)],
                       capture_output=True, text=True)
    if r.returncode: raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])

def digits_learner():
    "The digits CNN (briefly trained) over the PNG folder with real `aug_transforms`: an image pipeline's costs"
    import tempfile
    from pathlib import Path
    from fastai.vision.augment import aug_transforms
    from fastai.losses import CrossEntropyLossFlat
    from fastinterp.data import digits_folder, digits_learner
    path = digits_folder(Path(tempfile.gettempdir())/'fastinterp-digits')
    learn = digits_learner(path, loss_func=CrossEntropyLossFlat(),
                           batch_tfms=aug_transforms(do_flip=False, max_rotate=10., size=16))
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, 1e-2)
    return learn

def timing(n, runs, learn):
    "Median seconds of stock and fastinterp `tta(n)` on `learn`, alternating in one process"
    import torch; torch.set_num_threads(2)
    import fastinterp
    times = {'stock': [], 'fastinterp': []}
    with learn.no_bar(): learn.tta(n=1)
    for _ in range(runs):
        for which in ('stock', 'fastinterp'):
            if which == 'stock': fastinterp.unpatch()
            t0 = time.perf_counter()
            with learn.no_bar(): learn.tta(n=n)
            times[which].append(time.perf_counter() - t0)
            fastinterp.patch()
    return {k: statistics.median(v) for k, v in times.items()}

def main(n_items, n_classes, runs):
    mb = n_items * n_classes * 4 / 2**20
    print(f"{n_items:,} items x {n_classes:,} classes: one N x C float32 array is {mb:.0f} MB")
    print(f"{'n':>3} | {'stock peak MB':>13} | {'fastinterp peak MB':>18} | {'memory ratio':>12} | "
          f"max |row sum - 1| stock / fastinterp")
    for n in (2, 4, 8):
        s, f = memory('stock', n, n_items, n_classes), memory('fastinterp', n, n_items, n_classes)
        print(f"{n:>3} | {s['peak_mb']:13.0f} | {f['peak_mb']:18.0f} | {f['peak_mb']/s['peak_mb']:12.2f} | "
              f"{s['row_sum_err']:.1e} / {f['row_sum_err']:.1e}")
    cases = ((f'synthetic {n_items:,} x {n_classes:,}', lambda: learner(n_items, n_classes)),
             ('digits CNN, 359 PNGs', digits_learner))
    for name, make in cases:
        t = timing(8, runs, make())
        print(f"tta(n=8), {name}, median of {runs}: stock {t['stock']:.3f} s, fastinterp {t['fastinterp']:.3f} s, "
              f"ratio {t['fastinterp']/t['stock']:.3f}")

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--n-items', type=int, default=20000)
    ap.add_argument('--classes', type=int, default=1000)
    ap.add_argument('--runs', type=int, default=5)
    ap.add_argument('--child', nargs=2)
    a = ap.parse_args()
    if a.child: child(a.child[0], int(a.child[1]), a.n_items, a.classes)
    else: main(a.n_items, a.classes, a.runs)
