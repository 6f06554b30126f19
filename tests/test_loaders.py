"Data set order of a loader, and torch DataLoaders turned into fastai ones that yield the same batches in that order"
import numpy as np, pytest, torch
import torch.nn as nn
import torch.utils.data as tud
from fastai.data.load import DataLoader as FaDataLoader
from fastai.callback.data import PartialDL
from fastai.learner import _ConstantFunc

from fastinterp import ClassificationInterpretation
from fastinterp.loaders import dataset_order, inference_dl
from conftest import plain_learner, fit_quietly

@pytest.fixture(scope='module')
def learn(digits_arrays):
    X, y = digits_arrays
    return fit_quietly(plain_learner(X, y, nn.CrossEntropyLoss(), 10), 3)

@pytest.fixture(scope='module')
def ds(digits_arrays): return tud.TensorDataset(*digits_arrays)

def by_hand(learn, X):
    "Softmax of the model's outputs on `X`, item by item in data set order"
    learn.model.eval()
    with torch.no_grad(): return torch.softmax(learn.model(X), 1)

def test_order_of_fastai_loaders(ds):
    n = len(ds)
    assert torch.equal(dataset_order(FaDataLoader(ds, bs=64)), torch.arange(n))
    assert dataset_order(FaDataLoader(iter(ds), bs=64, indexed=False)) is None  # an iterable's items have no index
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    fixed = FaDataLoader(ds, bs=64, shuffle=True, get_idxs=_ConstantFunc(perm))  # as get_preds fixes a shuffled one
    assert dataset_order(fixed).tolist() == perm
    assert [int(i) for i in dataset_order(FaDataLoader(ds, bs=64, get_idxs=_ConstantFunc(perm[:10])))] == perm[:10]
    with pytest.raises(ValueError, match='shuffled DataLoader.*shuffles its items anew on every pass'):
        dataset_order(FaDataLoader(ds, bs=64, shuffle=True))
    with pytest.raises(ValueError, match='PartialDL.*draws another order at each call'):
        dataset_order(PartialDL(ds, bs=64, partial_n=n))  # a new random order without shuffle=True

def test_order_of_torch_loaders(ds):
    assert torch.equal(dataset_order(tud.DataLoader(ds, batch_size=64)), torch.arange(len(ds)))
    with pytest.raises(ValueError, match='torch DataLoader with a RandomSampler.*inference_dl'):
        dataset_order(tud.DataLoader(ds, batch_size=64, shuffle=True))
    batches = tud.BatchSampler(tud.SequentialSampler(ds), 64, False)
    assert torch.equal(dataset_order(tud.DataLoader(ds, batch_sampler=batches)), torch.arange(len(ds)))  # torch's own
    with pytest.raises(ValueError, match=r'custom batch sampler \(list\)'):  # batches of its own are not traced
        dataset_order(tud.DataLoader(ds, batch_sampler=list(batches)))
    with pytest.raises(TypeError, match="Expected a DataLoader.*got list"): dataset_order([ds[0]])

def test_fastai_loaders_pass_through_unchanged(learn):
    for dl in (learn.dls.train, learn.dls.valid, learn.dls.valid.new(shuffle=True)): assert inference_dl(dl) is dl

def double_x(items):
    "A collate_fn of one's own: the inputs doubled, so that using it shows"
    x, y = tud.default_collate(items)
    return 2 * x, y

@pytest.mark.parametrize('how', ['sequential', 'shuffle', 'batch_sampler'])
def test_torch_loader_becomes_the_same_batches_in_data_set_order(ds, how):
    kw = (dict(batch_sampler=tud.BatchSampler(tud.RandomSampler(ds), 50, True)) if how == 'batch_sampler' else
          dict(batch_size=50, shuffle=how == 'shuffle', drop_last=True))
    dl = inference_dl(tud.DataLoader(ds, collate_fn=double_x, **kw))
    assert isinstance(dl, FaDataLoader) and dl.dataset is ds and dl.bs == 50 and len(dl) == -(-len(ds) // 50)
    ref = list(tud.DataLoader(ds, batch_size=50, collate_fn=double_x))  # every item, in order, last batch kept
    got = list(dl)
    assert len(got) == len(ref)
    for b, (rx, ry) in zip(got, ref): assert type(b) is tuple and torch.equal(b[0], rx) and torch.equal(b[1], ry)

@pytest.mark.parametrize('kw, match', [
    (dict(sampler=tud.SubsetRandomSampler(range(100))), 'SubsetRandomSampler may pick some items'),
    (dict(sampler=tud.WeightedRandomSampler(torch.ones(1797), 1797)), 'WeightedRandomSampler may pick'),
    (dict(sampler=tud.RandomSampler(range(1797), replacement=True)), 'RandomSampler may pick some items'),
    (dict(batch_sampler=[[0, 1], [2, 3]], batch_size=1), 'custom batch sampler'),
    (dict(batch_size=None), 'batch_size=None'),
    (dict(num_workers=1, worker_init_fn=print), 'worker_init_fn')], ids=['subset', 'weighted', 'replacement',
                                                                       'batch_sampler', 'unbatched', 'worker_init_fn'])
def test_torch_loaders_it_cannot_reproduce_are_refused(ds, kw, match):
    kw = {'batch_size': 64, **kw}
    if 'batch_sampler' in kw: del kw['batch_size']
    with pytest.raises(ValueError, match=f'Cannot predict over this torch DataLoader in data set order: .*{match}'):
        inference_dl(tud.DataLoader(ds, **kw))

def test_torch_iterable_dataset_and_other_objects_refused(ds):
    class Stream(tud.IterableDataset):
        def __iter__(self): return iter(ds)
    with pytest.raises(ValueError, match='IterableDataset'): inference_dl(tud.DataLoader(Stream(), batch_size=8))
    with pytest.raises(TypeError, match="Expected a DataLoader .*got TensorDataset"): inference_dl(ds)

def test_interpretation_of_a_shuffled_torch_loader_in_data_set_order(learn, ds, digits_arrays):
    "What from_learner gets once it converts a dl= given: every item in data set order, whatever the torch sampler"
    X, y = digits_arrays
    dl = inference_dl(tud.DataLoader(ds, batch_size=64, shuffle=True))
    it = ClassificationInterpretation.from_learner(learn, dl=dl)
    torch.testing.assert_close(it.probs, by_hand(learn, X), atol=1e-6, rtol=0)
    assert torch.equal(it.targs, y)
    assert (it.decoded == y).float().mean() > 0.8

def test_from_learner_takes_a_torch_loader(learn, ds, digits_arrays):
    "A shuffled torch DataLoader as dl=: every item, in data set order, the probabilities computed by hand"
    X, y = digits_arrays
    for streaming in (False, True):
        it = ClassificationInterpretation.from_learner(learn, dl=tud.DataLoader(ds, batch_size=64, shuffle=True),
                                                       streaming=streaming, progress=False)
        if streaming: assert it.n == len(X) and it.accuracy() == pytest.approx((by_hand(learn, X).argmax(1) == y).float().mean().item())
        else:
            torch.testing.assert_close(it.probs, by_hand(learn, X), atol=1e-6, rtol=0)
            assert torch.equal(it.targs, y)
