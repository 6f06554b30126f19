import warnings
import numpy as np, pandas as pd, pytest, torch
import torch.nn as nn
import matplotlib
matplotlib.use('Agg')
from fastai.vision.all import *
from fastai.tabular.all import *
from fastai.data.load import DataLoader as FaDataLoader

import fastinterp
from fastinterp.data import digits_folder, digits_learner

@pytest.fixture(scope='session')
def digits_path(tmp_path_factory):
    return digits_folder(tmp_path_factory.mktemp('digits'))

def fit_quietly(learn, epochs=1, lr=1e-2):
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(epochs, lr)
    return learn

@pytest.fixture(scope='session')
def digits_vision(digits_path):
    "A digits CNN trained for 2 epochs with a plain `nn.CrossEntropyLoss()`"
    return fit_quietly(digits_learner(digits_path), 2)

def raw_outputs(learn, dl):
    "The model's outputs over `dl`, computed by hand: what the activation must be applied to"
    learn.model.eval()
    with torch.no_grad(): return torch.cat([learn.model(*b[:1]).float().cpu() for b in dl]).as_subclass(torch.Tensor)

@pytest.fixture(scope='session')
def reference(digits_vision):
    "Probabilities, targets and losses on the digits valid set, computed by hand from the model's raw outputs"
    learn = digits_vision
    raw = raw_outputs(learn, learn.dls.valid)
    targs = torch.cat([b[1] for b in learn.dls.valid]).cpu().as_subclass(torch.Tensor)
    return torch.softmax(raw, 1).numpy(), targs.numpy(), F.cross_entropy(raw, targs, reduction='none').numpy()

@pytest.fixture(scope='session')
def digits_arrays():
    from sklearn.datasets import load_digits
    d = load_digits()
    return torch.tensor(d.data / 16, dtype=torch.float32), torch.tensor(d.target)

def count_loads(monkeypatch):
    "Counts the items fastai's Datasets load: a batch fetched outside the pass shows up here"
    from fastai.data.core import Datasets
    loads, get = [], Datasets.__getitem__
    monkeypatch.setattr(Datasets, '__getitem__', lambda self, i: loads.append(i) or get(self, i))
    return loads

def count_looks(monkeypatch):
    "Counts the looks at a model's outputs to see whether they are probabilities already (every one goes through preds)"
    import fastinterp.preds
    looks, look = [], fastinterp.preds._outputs_are_probs
    def counted(*args):
        looks.append(args[2].shape)
        return look(*args)
    monkeypatch.setattr(fastinterp.preds, '_outputs_are_probs', counted)
    return looks

def plain_learner(X, y, loss_func, n_out, final=None, seed=0):
    "A plain `Learner(DataLoaders(...), nn.Module)` on tensors: no fastai transforms at all"
    set_seed(seed)
    n = len(X) * 4 // 5
    train, valid = list(zip(X[:n], y[:n])), list(zip(X[n:], y[n:]))
    dls = DataLoaders(FaDataLoader(train, bs=64, shuffle=True), FaDataLoader(valid, bs=128))
    model = nn.Sequential(nn.Linear(X.shape[1], 32), nn.ReLU(), nn.Linear(32, n_out), *([final] if final else []))
    return Learner(dls, model, loss_func=loss_func)

@pytest.fixture(scope='session')
def wine_tabular():
    "A tabular learner on scikit-learn's wine data (tabular targets are (N, 1), so the Flat loss)"
    from sklearn.datasets import load_wine
    d = load_wine(as_frame=True)
    df = d.frame.copy()
    df['target'] = df['target'].map({0: 'class_0', 1: 'class_1', 2: 'class_2'})
    set_seed(0)
    dls = TabularDataLoaders.from_df(df, y_names='target', cont_names=list(d.feature_names),
                                     procs=[Normalize], y_block=CategoryBlock(), bs=32,
                                     splits=RandomSplitter(0.3, seed=0)(range_of(df)), num_workers=0)
    learn = tabular_learner(dls, layers=[32], loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    return fit_quietly(learn, 5, 1e-2), df

def kernel_spec(tmp_path_factory, name, **env):
    "Install a kernel spec `name` for this interpreter, found first on JUPYTER_PATH (with `env` set); yield its name"
    import json, sys
    from ipykernel.kernelspec import install
    prefix = tmp_path_factory.mktemp('jupyter')
    install(kernel_name=name, prefix=str(prefix))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('JUPYTER_PATH', str(prefix/'share'/'jupyter'))
        for k, v in env.items(): mp.setenv(k, v)
        spec = json.loads((prefix/'share'/'jupyter'/'kernels'/name/'kernel.json').read_text())
        assert spec['argv'][0] == sys.executable
        yield name
