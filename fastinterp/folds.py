"Out-of-fold probabilities: every item predicted by a model that did not train on it, the training set's items too"

__all__ = ['fold_indices', 'out_of_fold']

from contextlib import contextmanager, nullcontext

import numpy as np, torch
from fastprogress.fastprogress import progress_bar

from .interpret import ClassificationInterpretation
from .passes import no_bar

def fold_indices(n:int, # Number of items
        n_folds:int=5, # Number of folds, 2 to `n`
        seed:int=0, # Seed of the random assignment
    )->np.ndarray:
    """(n,) fold of each item: a seeded random partition into `n_folds` folds whose sizes differ by one at most

    >>> f = fold_indices(10, 3)
    >>> sorted(np.bincount(f).tolist()), f.tolist() == fold_indices(10, 3).tolist()  # the same seed, the same folds
    ([3, 3, 4], True)
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)):
        raise TypeError(f"n_folds must be a whole number of folds, got {n_folds!r}")
    if not 2 <= n_folds <= n:
        raise ValueError(f"n_folds must be between 2 and the number of items ({n:,}), got {n_folds}: "
                         f"each fold is predicted by a model trained on the others")
    folds = np.empty(n, dtype=np.int64)
    folds[np.random.default_rng(seed).permutation(n)] = np.arange(n) % n_folds
    return folds

def _take(items, idxs):
    "The items at `idxs`, as `items` holds them: rows of a DataFrame, or a list"
    return items.iloc[idxs] if hasattr(items, 'iloc') else [items[i] for i in idxs]

def _default_fit(learn): learn.fit_one_cycle(1)

@contextmanager
def _quiet(learn):
    "Neither fastai's bar nor its table of epochs"
    with no_bar(learn), learn.no_logging(): yield

def out_of_fold(make_learner, # `make_learner(train, valid)`: an untrained `Learner` on `train`, validating on `valid`
        items, # Every item (paths, DataFrame rows, ...), labelled as the learner's data reads them
        n_folds:int=5, # Folds: each trains one learner on the other folds' items
        fit=None, # `fit(learn)` trains a fold's learner; None: `learn.fit_one_cycle(1)`
        seed:int=0, # Seed of the fold assignment
        progress:bool=True, # A bar over the folds, and fastai's bar and table of epochs while each fold trains
    )->ClassificationInterpretation:
    """One interpretation over every item, in the order of `items`, each item predicted by the one model that did not
    train on it: in-sample losses hide the training set's label errors, these do not

    >>> import tempfile
    >>> from fastai.vision.all import DataBlock, ImageBlock, CategoryBlock, IndexSplitter, Learner, parent_label
    >>> from fastinterp.data import digits_folder, digits_cnn
    >>> files = sorted(digits_folder(tempfile.mkdtemp()).glob('*/*/*.png'))[::20]  # 90 images, train and valid
    >>> def make_learner(train, valid):  # trained on `train`, validated on `valid`
    ...     block = DataBlock((ImageBlock, CategoryBlock(vocab=[str(c) for c in range(10)])), get_y=parent_label,
    ...                       splitter=IndexSplitter(range(len(train), len(train) + len(valid))))
    ...     dls = block.dataloaders(list(train) + list(valid), bs=16, num_workers=0)
    ...     return Learner(dls, digits_cnn(), loss_func=nn.CrossEntropyLoss())
    >>> interp = out_of_fold(make_learner, files, n_folds=3, progress=False)
    >>> len(interp.probs) == len(files), sorted(np.bincount(interp.fold).tolist())
    (True, [30, 30, 30])
    """
    if not callable(make_learner): raise TypeError(f"make_learner must be a function of (train_items, valid_items), "
                                                   f"got {type(make_learner).__name__}")
    n = len(items)
    folds = fold_indices(n, n_folds, seed)
    fit = _default_fit if fit is None else fit
    first = probs = targs = decoded = losses = None
    for f in progress_bar(range(n_folds)) if progress else range(n_folds):
        held, rest = np.flatnonzero(folds == f), np.flatnonzero(folds != f)
        valid = _take(items, held)
        learn = make_learner(_take(items, rest), valid)
        with nullcontext() if progress else _quiet(learn): fit(learn)
        dl = _valid_dl(learn, valid, f)
        with no_bar(learn): it = ClassificationInterpretation.from_learner(learn, dl=dl, progress=False)
        if not it.labelled: raise ValueError("out_of_fold needs labelled items: the learner's data read no labels")
        if first is None:
            first = it
            probs = it.probs.new_empty((n, *it.probs.shape[1:]))
            targs = it.targs.new_empty((n, *it.targs.shape[1:]))
            decoded = it.decoded.new_empty((n, *it.decoded.shape[1:]))
            losses = None if it.losses is None else it.losses.new_empty(n)
        elif list(it.vocab) != list(first.vocab):
            raise ValueError(f"The learner of fold {f + 1} has other classes than that of fold 1 "
                             f"({_diff(it.vocab, first.vocab)}): "
                             f"build every fold's learner with the same vocab (e.g. CategoryBlock(vocab=...))")
        at = torch.as_tensor(held)
        probs[at], targs[at], decoded[at] = it.probs, it.targs, it.decoded
        if losses is not None: losses[at] = it.losses
    dl = learn.dls.test_dl(items)  # every item's inputs, to show them: loading only, no inference
    interp = ClassificationInterpretation(learn, dl, probs, targs, decoded, losses, multilabel=first.multilabel,
                                          thresh=first.thresh)
    interp.fold, interp.n_folds = torch.as_tensor(folds), n_folds
    return interp

def _valid_dl(learn, held, f):
    "The learner's validation DataLoader, checked to hold the held-out items: their labels come as its data reads them"
    dl = learn.dls.valid
    n = len(dl.dataset) if hasattr(dl, 'dataset') else None
    if n != len(held):
        raise ValueError(f"make_learner(train_items, valid_items) must validate on valid_items, in their order: the "
                         f"learner of fold {f + 1} validates on {n} items, not the {len(held)} held out")
    mine = getattr(dl, 'items', None)
    if mine is not None and not hasattr(mine, 'iloc') and list(map(str, mine)) != list(map(str, held)):
        raise ValueError(f"The learner of fold {f + 1} validates on other items than valid_items, or in another "
                         f"order: out_of_fold puts each prediction back by position")
    return dl

def _diff(a, b):
    "What two vocabs differ by, in a few words"
    extra, missing = [str(v) for v in a if v not in b], [str(v) for v in b if v not in a]
    said = [f"adds {', '.join(extra[:5])}" if extra else '', f"lacks {', '.join(missing[:5])}" if missing else '']
    return ', '.join(s for s in said if s) or 'the same classes in another order'
