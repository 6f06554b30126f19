"Small real data sets that ship inside scikit-learn, as fastai learners use them: no download"

__all__ = ['digits_folder', 'digits_cnn', 'digits_learner', 'DIGIT_CODES', 'digits_masks', 'digits_unet',
           'digits_seg_learner']

from pathlib import Path

import numpy as np, torch
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

DIGIT_CODES = ['background'] + [str(c) for c in range(10)]  # class 0 the background, class c + 1 the digit c

def digits_masks(path, # Folder to write into; reused when it already holds the images
        size:int=32, # Side of each image and mask, in pixels (the 8x8 digits upscaled)
    )->Path:
    """A real segmentation task from scikit-learn's digits: `images/NNNN.png` (upscaled, grey) and `masks/NNNN.png`
    whose pixels are 0 (background) or 1 + the digit (`DIGIT_CODES`, 11 classes)

    >>> import tempfile
    >>> path = digits_masks(tempfile.mkdtemp())
    >>> m = np.array(Image.open(path/'masks'/'0000.png'))  # the first digit is a 0: its pixels are class 1
    >>> len(list((path/'images').iterdir())), m.shape, sorted(np.unique(m).tolist())
    (1797, (32, 32), [0, 1])
    """
    from sklearn.datasets import load_digits
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size is the side of the images in pixels, 8 or more, got {size!r}")
    path = Path(path)
    made = f"size={size}"
    if (path/'.complete').exists():
        was = (path/'.complete').read_text().strip()
        if was != made: raise ValueError(f"{path} holds digit masks written with {was}, not {made}: use another folder")
        return path
    d = load_digits()
    (path/'images').mkdir(parents=True, exist_ok=True)
    (path/'masks').mkdir(exist_ok=True)
    for i, (img, c) in enumerate(zip(d.images, d.target)):
        im = Image.fromarray((img * (255 / 16)).round().astype(np.uint8), mode='L').resize((size, size), Image.BILINEAR)
        im.save(path/'images'/f'{i:04d}.png')
        on = np.asarray(im) > 96  # the stroke: where the upscaled ink is darker than a little over a third
        Image.fromarray(np.where(on, c + 1, 0).astype(np.uint8), mode='L').save(path/'masks'/f'{i:04d}.png')
    (path/'.complete').write_text(made)
    return path

def _block(n_in, n_out):
    return nn.Sequential(nn.Conv2d(n_in, n_out, 3, padding=1), nn.BatchNorm2d(n_out), nn.ReLU(),
                         nn.Conv2d(n_out, n_out, 3, padding=1), nn.BatchNorm2d(n_out), nn.ReLU())

class _TinyUnet(nn.Module):
    "Two levels down and back up, each with a skip connection: a U-Net small enough to train in seconds"
    def __init__(self, n_in, n_classes, w):
        super().__init__()
        self.down1, self.down2, self.mid = _block(n_in, w), _block(w, 2 * w), _block(2 * w, 4 * w)
        self.up2, self.up1 = _block(6 * w, 2 * w), _block(3 * w, w)
        self.head = nn.Conv2d(w, n_classes, 1)

    def forward(self, x):
        up = lambda t, like: nn.functional.interpolate(t, size=like.shape[-2:], mode='nearest')
        a = self.down1(x)
        b = self.down2(nn.functional.max_pool2d(a, 2))
        m = self.mid(nn.functional.max_pool2d(b, 2))
        b = self.up2(torch.cat([up(m, b), b], 1))
        return self.head(self.up1(torch.cat([up(b, a), a], 1)))

def digits_unet(n_in:int=3, # Input channels (fastai opens a grey PNG as RGB)
        n_classes:int=11, # Output classes per pixel
        width:int=16, # Channels of the first level (twice as many below, four times at the bottom)
    )->nn.Module:
    """A small U-Net for the digit masks: (N, n_in, H, W) -> (N, n_classes, H, W) logits, H and W multiples of 4

    >>> digits_unet()(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 11, 32, 32])
    """
    return _TinyUnet(n_in, n_classes, width)

class _MaskOf:
    "The mask file of an image: a class, not a lambda, so that an exported learner pickles"
    def __init__(self, path): self.path = Path(path)
    def __call__(self, f): return self.path/'masks'/Path(f).name

def digits_seg_learner(path, # Folder of `digits_masks`
        loss_func=None, # Loss; `nn.CrossEntropyLoss()` if None (the outputs are (N, 11, H, W) logits)
        bs:int=32, # Batch size
        n_images:int|None=None, # The first this many images only; None: all
        width:int=16, # Channels of the U-Net's first level
        valid_pct:float=0.2, # Share of the images in the validation set
        seed:int=0, # Seed of the split, the data loaders and the model's initial weights
        batch_tfms=None, # Batch transforms, e.g. `aug_transforms()` (fastai moves the masks with the images)
        **kwargs # Passed to `Learner`
    ):
    """An untrained segmentation `Learner` on the digit masks, loaded by fastai's `SegmentationDataLoaders`

    >>> import tempfile
    >>> learn = digits_seg_learner(digits_masks(tempfile.mkdtemp()))
    >>> x, y = learn.dls.valid.one_batch()
    >>> len(learn.dls.valid.dataset), type(y).__name__, tuple(learn.model(x).shape[1:])  # 11 classes per pixel
    (359, 'TensorMask', (11, 32, 32))
    """
    from fastai.vision.all import SegmentationDataLoaders, Learner, set_seed
    set_seed(seed, reproducible=True)
    path = Path(path)
    files = sorted((path/'images').iterdir())[:n_images]
    dls = SegmentationDataLoaders.from_label_func(path, files, _MaskOf(path), valid_pct,
                                                  seed=seed, codes=DIGIT_CODES, bs=bs, batch_tfms=batch_tfms,
                                                  num_workers=0)
    return Learner(dls, digits_unet(width=width), loss_func=nn.CrossEntropyLoss() if loss_func is None else loss_func,
                   **kwargs)

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

__all__ += ['wine_texts']

_WINE_WORDS = {'alcohol': 'alcohol', 'malic_acid': 'malic acid', 'ash': 'ash', 'alcalinity_of_ash': 'alkalinity of ash',
               'magnesium': 'magnesium', 'total_phenols': 'phenols', 'flavanoids': 'flavanoids',
               'nonflavanoid_phenols': 'nonflavanoid phenols', 'proanthocyanins': 'proanthocyanins',
               'color_intensity': 'colour', 'hue': 'hue', 'od280/od315_of_diluted_wines': 'OD ratio',
               'proline': 'proline'}

def wine_texts(n_features:int=5, # Features each description names, drawn at random: fewer make it harder
        seed:int=0, # Seed of the features drawn
    ):
    """scikit-learn's 178 wines described in words, each by `n_features` of its 13 features binned into thirds (low,
    medium, high), labelled by cultivar: a small text classification set, as a DataFrame of `text` and `label`

    >>> df = wine_texts()
    >>> df.shape, df['label'].value_counts().sort_index().tolist()
    ((178, 2), [59, 71, 48])
    >>> df['text'][0]
    'This wine has high flavanoids, high phenols, low alkalinity of ash, high magnesium and low nonflavanoid phenols.'
    """
    import pandas as pd
    from sklearn.datasets import load_wine
    if not isinstance(n_features, int) or not 1 <= n_features <= len(_WINE_WORDS):
        raise ValueError(f"n_features is how many of the {len(_WINE_WORDS)} features each text names, "
                         f"from 1 to {len(_WINE_WORDS)}, got {n_features!r}")
    d = load_wine(as_frame=True)
    names = list(d.feature_names)
    # thirds of each feature: 'high proline' means among the third of the wines with the most
    levels = {c: pd.qcut(d.frame[c], 3, labels=['low', 'medium', 'high']).astype(str).tolist() for c in names}
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(len(d.frame)):
        parts = [f"{levels[c][i]} {_WINE_WORDS[c]}" for c in rng.choice(names, n_features, replace=False)]
        texts.append('This wine has ' + (', '.join(parts[:-1]) + ' and ' if len(parts) > 1 else '') + parts[-1] + '.')
    return pd.DataFrame({'text': texts, 'label': [f'cultivar {t + 1}' for t in d.target]})
