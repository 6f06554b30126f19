"""Likely label errors on the digits with 3% of the labels flipped: fastinterp and cleanlab on the same probabilities.

scikit-learn's 1,797 digits written as a PNG folder (`digits_folder(flip=0.03)`: 54 images in another class's folder,
seeded, listed in flipped.csv). `fastinterp.out_of_fold` trains one small CNN per fold (5 folds, `digits_cnn`, 4
epochs of fit_one_cycle at 1e-2, plain cross-entropy) and predicts every image, train and valid, with the model that
did not see it. On those probabilities, each row of the table lists a set of items and scores it against the flipped
set (precision, recall, F1):
- fastinterp `label_issues()`: the items ranked by self-confidence, cut at `estimate_label_errors().count` (the
  calibrated confident joint's off-diagonal);
- cleanlab `find_label_issues` with its defaults ('prune_by_noise_rate'), with filter_by='prune_by_class', and with
  filter_by='low_self_confidence' (the same ranking cut at its default, uncalibrated count);
- top losses at k = fastinterp's estimated count (the course's recipe with a stopping point), and at k = the true
  number flipped (an oracle no user has).
The count row compares `estimate_label_errors().count` and cleanlab's `num_label_issues` with the 54 flipped.
Each figure is over --runs runs (seeds of the folds and of the models' weights): median, and min-max.
Run: .venv/bin/python bench/bench_label_issues.py [--runs 3] [--folds 5] [--epochs 4] [--flip 0.03]
"""
import argparse, statistics, tempfile, time, warnings
warnings.filterwarnings('ignore')
from pathlib import Path

import numpy as np, pandas as pd, torch, torch.nn as nn

def scores(found, flipped):
    "(precision, recall, F1) of the set `found` against the set `flipped`"
    hit = len(found & flipped)
    p = hit / len(found) if found else 0.
    r = hit / len(flipped)
    return p, r, (2 * p * r / (p + r) if p + r else 0.)

def one_run(path, files, flipped, n_folds, epochs, seed):
    import cleanlab
    from fastai.vision.all import CategoryBlock, DataBlock, ImageBlock, IndexSplitter, Learner, parent_label
    import fastinterp
    from fastinterp.data import digits_cnn

    def make_learner(train, valid):
        block = DataBlock((ImageBlock, CategoryBlock(vocab=[str(c) for c in range(10)])), get_y=parent_label,
                          splitter=IndexSplitter(range(len(train), len(train) + len(valid))))
        return Learner(block.dataloaders(list(train) + list(valid), bs=64, num_workers=0), digits_cnn(),
                       loss_func=nn.CrossEntropyLoss())

    def fit(learn):
        with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(epochs, 1e-2)

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    oof = fastinterp.out_of_fold(make_learner, files, n_folds=n_folds, fit=fit, seed=seed, progress=False)
    fold_time = time.perf_counter() - t0
    names = np.array([str(f) for f in files])
    probs, labels = oof.probs.numpy().astype(np.float64), oof.targs.numpy()
    est = oof.estimate_label_errors().count
    as_set = lambda idxs: set(names[np.asarray(idxs)])
    t0 = time.perf_counter()
    ours = as_set(oof.label_issues()[1])
    ours_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    cl_default = as_set(np.flatnonzero(cleanlab.filter.find_label_issues(labels, probs)))
    cl_time = time.perf_counter() - t0
    cl_class = as_set(np.flatnonzero(cleanlab.filter.find_label_issues(labels, probs, filter_by='prune_by_class')))
    cl_low = as_set(np.flatnonzero(cleanlab.filter.find_label_issues(labels, probs, filter_by='low_self_confidence')))
    rows = {'fastinterp label_issues()': ours,
            "cleanlab find_label_issues (default, 'prune_by_noise_rate')": cl_default,
            "cleanlab find_label_issues (filter_by='prune_by_class')": cl_class,
            "cleanlab find_label_issues (filter_by='low_self_confidence')": cl_low,
            'top losses, k = fastinterp estimated count': as_set(oof.top_losses(est)[1]),
            'top losses, k = true number flipped (oracle)': as_set(oof.top_losses(len(flipped))[1])}
    out = {name: (len(s), *scores(s, flipped)) for name, s in rows.items()}
    counts = {'fastinterp estimate_label_errors().count': est,
              "cleanlab num_label_issues (default, 'off_diagonal')":
                  int(cleanlab.count.num_label_issues(labels, probs)),
              "cleanlab num_label_issues ('off_diagonal_calibrated')":
                  int(cleanlab.count.num_label_issues(labels, probs, estimation_method='off_diagonal_calibrated'))}
    return out, counts, oof.accuracy(), fold_time, ours_time, cl_time

def spread(vals, fmt):
    return f"{fmt.format(statistics.median(vals))} ({fmt.format(min(vals))}-{fmt.format(max(vals))})"

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--folds', type=int, default=5)
    ap.add_argument('--epochs', type=int, default=4)
    ap.add_argument('--flip', type=float, default=0.03)
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    from fastinterp.data import digits_folder
    path = digits_folder(Path(tempfile.mkdtemp())/'digits', flip=a.flip)
    flipped = {str(path/f) for f in pd.read_csv(path/'flipped.csv')['file']}
    files = sorted(path.glob('*/*/*.png'))
    print(f"digits: {len(files):,} images, {len(flipped)} labels flipped ({a.flip:.0%}), out of fold over {a.folds} "
          f"folds, {a.epochs} epochs per fold, {a.runs} runs (fold and weight seeds 0..{a.runs - 1})\n")
    res = [one_run(path, files, flipped, a.folds, a.epochs, s) for s in range(a.runs)]
    print("| items listed by | listed | precision | recall | F1 |\n|---|---|---|---|---|")
    for name in res[0][0]:
        col = lambda j, fmt: spread([r[0][name][j] for r in res], fmt)
        print(f"| {name} | {col(0, '{:.0f}')} | {col(1, '{:.2f}')} | {col(2, '{:.2f}')} | {col(3, '{:.3f}')} |")
    print(f"\n| estimated number of label errors (true: {len(flipped)}) | count | off by |\n|---|---|---|")
    for name in res[0][1]:
        vals = [r[1][name] for r in res]
        print(f"| {name} | {spread(vals, '{:.0f}')} | "
              f"{spread([abs(v - len(flipped)) / len(flipped) for v in vals], '{:.0%}')} |")
    f1 = lambda r, name: r[0][name][3]
    ratio = [f1(r, 'fastinterp label_issues()') / f1(r, "cleanlab find_label_issues (default, 'prune_by_noise_rate')")
             for r in res]
    print(f"\nF1 of fastinterp / cleanlab's default, per run: {', '.join(f'{x:.3f}' for x in ratio)}")
    print(f"out-of-fold accuracy against the given labels: {spread([r[2] for r in res], '{:.3f}')}; "
          f"out_of_fold (training {a.folds} models): {spread([r[3] for r in res], '{:.0f}')} s; "
          f"label_issues(): {spread([r[4] * 1e3 for r in res], '{:.1f}')} ms, "
          f"cleanlab find_label_issues: {spread([r[5] * 1e3 for r in res], '{:.1f}')} ms")

if __name__ == '__main__':
    main()
