"pytest fixtures of the docstring examples (numpy and pandas ship theirs alike): torch, and `learn`, a trained learner"
import random
from contextlib import contextmanager

import pytest
from _pytest.doctest import DoctestItem

_learner = _seg_learner = None

@contextmanager
def _seeded(seed=0):
    "torch's and Python's random numbers seeded within, and given back after: the tests' draws stay theirs"
    import torch
    state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed); torch.manual_seed(seed)
        try: yield
        finally: random.setstate(state)

def _small_learner():
    "3 classes of Gaussian blobs in 8 features, 120 items to train on and 60 to validate, an MLP with dropout"
    import torch, torch.nn as nn
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner
    import fastinterp  # noqa: F401 (patches fastai before the learner predicts)
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 2
    y = torch.arange(180) % 3
    x = centres[y] + torch.randn(180, 8, generator=g)
    items = list(zip(x, y))
    dls = DataLoaders(DataLoader(items[:120], bs=32, shuffle=True), DataLoader(items[120:], bs=32))
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
    learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss())
    # fastai's progress bar is a default once fastai.callback.progress is loaded (tests/ loads it): its bars would
    # print into the examples' output, so this learner never has one (that also keeps the training quiet)
    if hasattr(learn, 'progress'): learn.remove_cb(learn.progress)
    with learn.no_logging(): learn.fit(3, 1e-2)
    return learn

def _small_seg_learner():
    "200 of the digit masks at 16 x 16 (40 to validate), a narrow U-Net trained for one epoch"
    import tempfile
    from fastinterp.data import digits_masks, digits_seg_learner
    learn = digits_seg_learner(digits_masks(tempfile.mkdtemp(), size=16), n_images=200, width=8)
    if hasattr(learn, 'progress'): learn.remove_cb(learn.progress)
    with learn.no_logging(): learn.fit_one_cycle(1, 1e-2)
    return learn

@pytest.fixture(autouse=True)
def _doctest_names(request):
    "Only for the docstring examples: the learner is built once, the first time one of them runs"
    global _learner
    if isinstance(request.node, DoctestItem):
        import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
        import fastinterp
        if _learner is None:
            with _seeded(0): _learner = _small_learner()  # the same model, shuffle order and dropout everywhere
        ns = request.getfixturevalue('doctest_namespace')
        ns.update(torch=torch, nn=nn, F=F, np=np, fastinterp=fastinterp, learn=_learner)
        if 'segmentation' in request.node.name:  # built only for the examples that use it
            global _seg_learner
            if _seg_learner is None:
                with _seeded(0): _seg_learner = _small_seg_learner()
            ns['seg_learn'] = _seg_learner
    yield
