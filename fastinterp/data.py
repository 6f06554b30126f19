"Small real data sets that ship inside scikit-learn, as fastai learners use them: no download"

__all__ = ['digits_folder', 'digits_cnn', 'digits_learner']

from pathlib import Path

import numpy as np
import torch.nn as nn
from PIL import Image

def digits_folder(path, # Folder to write into; reused when it already holds the images
        valid_pct:float=0.2, # Share of each class put in `valid/`
        seed:int=42, # Seed of the train/valid split (and of the flipped labels)
        flip:float=0.0, # Share of the images written into another class's folder: labels known to be wrong
    )->Path:
    """Write scikit-learn's 1,797 8x8 digits as PNGs in `path/{train,valid}/{0..9}/`: a real image folder. With `flip`,
    that share of the images (train and valid, seeded) sits in a wrong class folder, listed in `path/flipped.csv`

    >>> import tempfile
    >>> path = digits_folder(tempfile.mkdtemp())
    >>> len(list(path.glob('*/*/*.png'))), sorted(p.name for p in (path/'train').iterdir())[:3]
    (1797, ['0', '1', '2'])
    >>> import pandas as pd
    >>> flipped = pd.read_csv(digits_folder(tempfile.mkdtemp(), flip=0.03)/'flipped.csv')
    >>> len(flipped), bool((flipped['given'] != flipped['true']).all())  # 3% of 1,797, each in another class's folder
    (54, True)
    """
    from sklearn.datasets import load_digits
    if not 0 <= flip < 1: raise ValueError(f"flip is a share of the images, from 0 to below 1, got {flip!r}")
    path = Path(path)
    made = f"valid_pct={valid_pct} seed={seed} flip={flip}"
    if (path/'.complete').exists():
        was = (path/'.complete').read_text().strip() or "valid_pct=0.2 seed=42 flip=0.0"  # written before flip was
        if was != made: raise ValueError(f"{path} holds digits written with {was}, not {made}: use another folder")
        return path
    d = load_digits()
    rng = np.random.default_rng(seed)
    imgs = (d.images * (255 / 16)).round().astype(np.uint8)
    given = d.target.copy()
    flips = np.random.default_rng([seed, 1])  # a stream of its own: the split is the same with flipped labels or not
    flipped = np.sort(flips.choice(len(given), int(round(flip * len(given))), replace=False))
    given[flipped] = (given[flipped] + flips.integers(1, 10, len(flipped))) % 10  # any other class, evenly
    rows = []
    for c in range(10):
        idxs = rng.permutation(np.flatnonzero(d.target == c))  # split by the true class: the same split as unflipped
        n_valid = int(round(len(idxs) * valid_pct))
        for j, i in enumerate(idxs):
            folder = path/('valid' if j < n_valid else 'train')/str(given[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(imgs[i], mode='L').save(folder/f'{i:04d}.png')
            if given[i] != c: rows.append((str((folder/f'{i:04d}.png').relative_to(path)), c, given[i]))
    if flip:
        with open(path/'flipped.csv', 'w') as f:
            f.write('file,true,given\n' + ''.join(f'{r[0]},{r[1]},{r[2]}\n' for r in sorted(rows)))
    (path/'.complete').write_text(made)
    return path

def digits_cnn(n_out:int=10, # Number of outputs
        final=None, # Optional last layer, e.g. `nn.LogSoftmax(1)` for `nn.NLLLoss`
    )->nn.Module:
    """A small CNN for 3x8x8 images that trains in seconds on a CPU

    >>> digits_cnn()(torch.zeros(2, 3, 8, 8)).shape
    torch.Size([2, 10])
    """
    layers = [nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
              nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
              nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(64, n_out)]
    return nn.Sequential(*layers, *([final] if final is not None else []))

def digits_learner(path, # Folder of the digits PNGs (see `digits_folder`)
        loss_func=None, # Loss; `nn.CrossEntropyLoss()` if None
        n_out:int=10, # Number of model outputs
        final=None, # Optional last layer of the model
        bs:int=64, # Batch size
        batch_tfms=None, # Batch transforms, e.g. `aug_transforms()`
        seed:int=0, # Seed of the data loaders and the model's initial weights
        **kwargs # Passed to `Learner`
    ):
    """An untrained vision `Learner` on the digits folder, with a plain PyTorch loss by default

    >>> import tempfile
    >>> learn = digits_learner(digits_folder(tempfile.mkdtemp()))
    >>> learn.dls.vocab[:3], len(learn.dls.valid.dataset), type(learn.loss_func).__name__
    (['0', '1', '2'], 359, 'CrossEntropyLoss')
    """
    from fastai.vision.all import ImageDataLoaders, Learner, set_seed, accuracy
    set_seed(seed, reproducible=True)
    dls = ImageDataLoaders.from_folder(path, train='train', valid='valid', bs=bs, num_workers=0, batch_tfms=batch_tfms)
    return Learner(dls, digits_cnn(n_out, final), loss_func=nn.CrossEntropyLoss() if loss_func is None else loss_func,
                   metrics=accuracy if n_out > 1 else None, **kwargs)
