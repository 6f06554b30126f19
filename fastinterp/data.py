"Small real data sets that ship inside scikit-learn, as fastai learners use them: no download"

__all__ = ['digits_folder', 'digits_cnn', 'digits_learner']

from pathlib import Path

import numpy as np
import torch.nn as nn
from PIL import Image

def digits_folder(path, # Folder to write into; reused when it already holds the images
        valid_pct:float=0.2, # Share of each class put in `valid/`
        seed:int=42, # Seed of the train/valid split
    )->Path:
    """Write scikit-learn's 1,797 8x8 digits as PNGs in `path/{train,valid}/{0..9}/`: a real image folder

    >>> import tempfile
    >>> path = digits_folder(tempfile.mkdtemp())
    >>> len(list(path.glob('*/*/*.png'))), sorted(p.name for p in (path/'train').iterdir())[:3]
    (1797, ['0', '1', '2'])
    """
    from sklearn.datasets import load_digits
    path = Path(path)
    if (path/'.complete').exists(): return path
    d = load_digits()
    rng = np.random.default_rng(seed)
    imgs = (d.images * (255 / 16)).round().astype(np.uint8)
    for c in range(10):
        idxs = rng.permutation(np.flatnonzero(d.target == c))
        n_valid = int(round(len(idxs) * valid_pct))
        for j, i in enumerate(idxs):
            folder = path/('valid' if j < n_valid else 'train')/str(c)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(imgs[i], mode='L').save(folder/f'{i:04d}.png')
    (path/'.complete').touch()
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
