"Test-time augmentation: probabilities averaged, rows summing to 1, in one O(N x C) buffer, checked against separate passes"
from collections import Counter
import socket
import numpy as np, pytest, torch
import torch.nn as nn
import torch.distributed as dist
import torch.utils.data as tud
from fastai.vision.all import (aug_transforms, set_seed, Learner, CrossEntropyLossFlat, BCEWithLogitsLossFlat, DataBlock,
                               ImageBlock, MultiCategoryBlock, RegressionBlock, GrandparentSplitter, get_image_files, parent_label)
from fastai.vision.all import ImageDataLoaders, Callback, FlipItem, ToTensor, IntToFloatTensor, Transform, Pipeline
from fastai.vision.all import DataLoaders
from fastai.data.load import DataLoader as FaDataLoader
from fastai.callback.data import PartialDL
from fastai.learner import _ConstantFunc

import fastinterp
from fastinterp import ClassificationInterpretation, TTACallback
from fastinterp.preds import stock_get_preds
from fastinterp.loaders import inference_dl
from fastinterp.uncertainty import mc_dropout
from conftest import plain_learner, raw_outputs, fit_quietly

AUG = dict(do_flip=False, max_rotate=10., min_scale=0.9, max_warp=0.1, size=16)

@pytest.fixture(scope='module')
def aug_dls(digits_path):
    set_seed(0)
    return ImageDataLoaders.from_folder(digits_path, train='train', valid='valid', bs=64, num_workers=0,
                                        batch_tfms=aug_transforms(**AUG))

def aug_learner(digits_vision, dls, loss_func):
    "The trained digits CNN over data loaders with real `aug_transforms`"
    return Learner(dls, digits_vision.model, loss_func=loss_func)

@pytest.fixture(scope='module')
def learn(digits_vision, aug_dls): return aug_learner(digits_vision, aug_dls, nn.CrossEntropyLoss())

def separate_passes(learn, n, seed, fn=stock_get_preds):
    "n augmented passes and the un-augmented one, each a separate get_preds call, as raw outputs"
    dl = learn.dls.valid.new(shuffle=False, drop_last=False)
    set_seed(seed)
    with dl.dataset.set_split_idx(0): aug = [fn(learn, dl=dl, act=lambda x: x)[0] for _ in range(n)]
    with dl.dataset.set_split_idx(1): plain, targs = fn(learn, dl=dl, act=lambda x: x)
    return torch.stack(aug).numpy(), plain.numpy(), targs.numpy()

def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)

@pytest.mark.parametrize('loss_func', [nn.CrossEntropyLoss(), CrossEntropyLossFlat()], ids=['nn.CrossEntropyLoss', 'CrossEntropyLossFlat'])
@pytest.mark.parametrize('mode', ['mean', 'gmean', 'max'])
def test_every_mode_matches_separate_passes_and_rows_sum_to_1(digits_vision, aug_dls, loss_func, mode):
    learn, n, beta = aug_learner(digits_vision, aug_dls, loss_func), 3, 0.25
    set_seed(7)
    probs, targs = learn.tta(n=n, mode=mode, beta=beta, progress=False)
    raw_aug, raw_plain, ref_t = separate_passes(learn, n, 7)
    p_aug, p_plain = np_softmax(raw_aug), np_softmax(raw_plain)
    if mode == 'max': ref = np.maximum(p_aug.max(0), p_plain); ref = ref / ref.sum(1, keepdims=True)  # the max of every pass
    else:
        agg = p_aug.mean(0) if mode == 'mean' else np_softmax(np.log(p_aug).mean(0))
        ref = agg + beta * (p_plain - agg)
    assert not np.allclose(p_aug[0], p_aug[1], atol=1e-3)  # the augmentations did change the inputs
    np.testing.assert_allclose(probs.numpy(), ref, atol=1e-5)
    np.testing.assert_array_equal(targs.numpy(), ref_t)
    torch.testing.assert_close(probs.sum(1), torch.ones(len(probs)), atol=1e-5, rtol=0)
    assert (probs >= 0).all()

@pytest.mark.parametrize('kwargs', [{}, dict(use_max=True, beta=None)], ids=['mean', 'use_max'])
def test_equals_stock_fastai_where_stock_is_right(digits_vision, aug_dls, kwargs):
    "With CrossEntropyLossFlat stock fastai averages probabilities too: same seed, same numbers; use_max blends whatever beta, rows renormalized"
    learn = aug_learner(digits_vision, aug_dls, CrossEntropyLossFlat())
    set_seed(3)
    ours, _ = learn.tta(n=2, progress=False, **kwargs)
    fastinterp.unpatch()
    try:
        set_seed(3)
        with learn.no_bar(): stock, _ = learn.tta(n=2, **kwargs)
    finally: fastinterp.patch()
    if kwargs: stock = stock / stock.sum(1, keepdim=True)
    torch.testing.assert_close(ours, stock, atol=1e-6, rtol=1e-5)

class EventCounter(Callback):
    "A user's callback that counts the events it sees"
    def __init__(self): self.seen = Counter()
    def __call__(self, event_name):
        self.seen[event_name] += 1
        return super().__call__(event_name)

def test_callbacks_on_the_learner_see_the_events_stock_fastai_sends(digits_vision, aug_dls):
    learn, seen = aug_learner(digits_vision, aug_dls, CrossEntropyLossFlat()), {}
    for which in ('stock', 'fastinterp'):
        learn.add_cb(cb := EventCounter())
        if which == 'stock': fastinterp.unpatch()
        try:
            with learn.no_bar(): learn.tta(n=2)
        finally: fastinterp.patch()
        learn.remove_cb(cb)
        seen[which] = cb.seen
    assert seen['fastinterp'] == seen['stock'] and seen['stock']['before_fit'] == seen['stock']['after_fit'] == 1
    assert seen['stock']['before_validate'] == 3 and seen['stock']['after_batch'] == 3 * len(learn.dls.valid)

def test_stock_fastai_averages_logits_with_a_plain_loss(learn):
    "The bug this fixes: with nn.CrossEntropyLoss stock fastai's tta rows do not sum to 1"
    fastinterp.unpatch()
    try:
        with learn.no_bar(): stock, _ = learn.tta(n=2)
    finally: fastinterp.patch()
    assert (stock.sum(1) - 1).abs().max() > 0.5
    ours, _ = learn.tta(n=2, progress=False)
    torch.testing.assert_close(ours.sum(1), torch.ones(len(ours)), atol=1e-5, rtol=0)

def test_beta_none_and_use_max_as_in_fastai(learn):
    n = 2
    set_seed(5)
    (aug, plain), targs = learn.tta(n=n, beta=None, progress=False)
    raw_aug, raw_plain, _ = separate_passes(learn, n, 5)
    np.testing.assert_allclose(aug.numpy(), np_softmax(raw_aug).mean(0), atol=1e-5)
    np.testing.assert_allclose(plain.numpy(), np_softmax(raw_plain), atol=1e-5)
    set_seed(5)
    p_max, _ = learn.tta(n=n, use_max=True, beta=None, progress=False)  # one blended tensor, as in fastai
    set_seed(5)
    (aug_max, _), _ = learn.tta(n=n, mode='max', beta=None, progress=False)  # apart: the max of the augmented passes
    agg = np_softmax(raw_aug).max(0)
    np.testing.assert_allclose(aug_max.numpy(), agg / agg.sum(1, keepdims=True), atol=1e-5)
    ref = np.maximum(agg, np_softmax(raw_plain))
    np.testing.assert_allclose(p_max.numpy(), ref / ref.sum(1, keepdims=True), atol=1e-5)

def test_report_has_the_accuracy_of_each_pass(learn):
    n = 3
    set_seed(11)
    res = learn.tta(n=n, progress=False)
    raw_aug, raw_plain, t = separate_passes(learn, n, 11)
    rep = res.report
    assert list(rep.index) == ['pass 1', 'pass 2', 'pass 3', 'un-augmented', 'TTA (mean, beta=0.25)']
    acc = lambda raw: (raw.argmax(-1) == t).mean()
    nll = lambda p: -np.log(p[np.arange(len(t)), t]).mean()
    np.testing.assert_allclose(rep['accuracy'].values[:n], [acc(r) for r in raw_aug], atol=1e-6)
    np.testing.assert_allclose(rep.loc['un-augmented', 'accuracy'], acc(raw_plain), atol=1e-6)
    np.testing.assert_allclose(rep['nll'].values[:n], [nll(np_softmax(r)) for r in raw_aug], rtol=1e-4)
    np.testing.assert_allclose(rep.iloc[-1]['accuracy'], (res[0].numpy().argmax(1) == t).mean(), atol=1e-6)
    np.testing.assert_allclose(rep.iloc[-1]['nll'], nll(res[0].numpy()), rtol=1e-4)

@pytest.mark.parametrize('given', [False, True], ids=['ds_idx=0', 'dl=dls.train'])
def test_shuffled_training_set_comes_back_in_dataset_order(learn, given):
    "The training DataLoader shuffles and drops its last batch: every item still comes back, in dataset order"
    (_, plain), targs = learn.tta(**(dict(dl=learn.dls.train) if given else dict(ds_idx=0)), n=1, beta=None, progress=False)
    ds = learn.dls.train_ds
    ref = torch.tensor([learn.dls.vocab.o2i[p.parent.name] for p in ds.items])
    assert torch.equal(targs.view(-1).cpu(), ref)
    dl = learn.dls.train.new(shuffle=False, drop_last=False)
    with dl.dataset.set_split_idx(1): raw = raw_outputs(learn, dl)
    torch.testing.assert_close(plain, torch.softmax(raw, 1), atol=1e-5, rtol=0)

def test_callback_puts_shuffled_passes_back_in_dataset_order(digits_arrays):
    "Passes run through get_preds in a new random order each: the aggregate and targets still line up with the dataset"
    X, y = digits_arrays
    learn = plain_learner(X, y, nn.CrossEntropyLoss(), 10)
    cb, dl = TTACallback(), learn.dls.train.new(shuffle=True, drop_last=False)
    for _ in range(3): stock_get_preds(learn, dl=dl, cbs=[cb])
    in_order = learn.dls.train.new(shuffle=False, drop_last=False)
    torch.testing.assert_close(cb.value, torch.softmax(raw_outputs(learn, in_order), 1), atol=1e-6, rtol=0)
    assert torch.equal(cb.targs, y[:len(cb.targs)]) and len(cb.targs) == len(dl.dataset)
    with pytest.raises(ValueError, match='shuffles its items anew on every pass'): learn.validate(dl=dl, cbs=[TTACallback()])
    with pytest.raises(RuntimeError, match=r'predict every item once \(drop_last=False\)'):
        learn.validate(dl=learn.dls.train.new(shuffle=False, drop_last=True), cbs=[TTACallback()])

def test_memory_is_one_buffer_whatever_n(learn):
    "The callback keeps one (N, C) running aggregate, not n of them"
    for n in (1, 4):
        cb = TTACallback()
        dl = learn.dls.valid.new(shuffle=False)
        with dl.dataset.set_split_idx(0):
            for _ in range(n): stock_get_preds(learn, dl=dl, cbs=[cb])
        assert cb.n_passes == n and cb.agg.shape == (len(dl.dataset), 10)
        torch.testing.assert_close(cb.value.sum(1), torch.ones(len(dl.dataset)), atol=1e-5, rtol=0)
    kept = cb.value
    torch.testing.assert_close(cb.result(inplace=True), kept)  # the buffer handed over, same numbers
    with pytest.raises(ValueError, match=r'reset\(\) before more passes'): stock_get_preds(learn, dl=dl, cbs=[cb])

@pytest.fixture(scope='module')
def multilabel_learner(digits_vision, digits_path):
    "The digits CNN read as 10 independent sigmoid labels, over multi-category data with real augmentations"
    set_seed(0)
    dls = DataBlock(blocks=(ImageBlock, MultiCategoryBlock), get_items=get_image_files, get_y=lambda p: [parent_label(p)],
                    splitter=GrandparentSplitter(valid_name='valid'), batch_tfms=aug_transforms(**AUG)).dataloaders(digits_path, bs=64, num_workers=0)
    return Learner(dls, digits_vision.model, loss_func=BCEWithLogitsLossFlat())

@pytest.mark.parametrize('mode', ['mean', 'gmean', 'max'])
def test_multilabel_stays_in_0_1_without_renormalizing(multilabel_learner, mode):
    learn, n = multilabel_learner, 2
    set_seed(2)
    (aug, plain), targs = learn.tta(n=n, mode=mode, beta=None, progress=False)
    raw_aug, _, _ = separate_passes(learn, n, 2)
    p = 1 / (1 + np.exp(-raw_aug))
    ref = {'mean': p.mean(0), 'max': p.max(0), 'gmean': 1 / (1 + np.exp(-raw_aug.mean(0)))}[mode]  # per-label gmean: sigmoid of the mean logit
    np.testing.assert_allclose(aug.numpy(), ref, atol=1e-5)
    assert ((aug >= 0) & (aug <= 1)).all()
    assert targs.shape == aug.shape and set(targs.unique().tolist()) == {0, 1}
    assert (aug.sum(1) - 1).abs().max() > 0.05  # labels are independent: nothing made them sum to 1

def test_interpretation_from_tta(learn):
    set_seed(4)
    it = ClassificationInterpretation.from_learner(learn, tta=3, progress=False)
    set_seed(4)
    probs, targs = learn.tta(n=3, progress=False)
    torch.testing.assert_close(it.probs, probs)
    assert torch.equal(it.targs, targs) and torch.equal(it.decoded, probs.argmax(1))
    np.testing.assert_allclose(it.losses.numpy(), -np.log(probs.numpy()[np.arange(len(targs)), targs.numpy()]), rtol=1e-5)
    assert it.tta_report is not None and it.tta_report.index[-1].startswith('TTA')
    assert ClassificationInterpretation.from_learner(learn).tta_report is None
    it = ClassificationInterpretation.from_learner(learn, tta=2, use_max=True, beta=None, progress=False)  # use_max blends, as in fastai
    assert it.tta_report.index[-1] == 'TTA (max)' and it.probs.shape == probs.shape

def test_interpretation_from_tta_unlabelled(learn):
    dl = learn.dls.test_dl(learn.dls.valid.items[:40])
    it = ClassificationInterpretation.from_learner(learn, dl=dl, tta=2, progress=False)
    assert not it.labelled and it.tta_report is None and len(it.probs) == 40
    assert len(it.most_uncertain(5)[1]) == 5

@pytest.fixture(scope='module')
def binary_learner(digits_vision, digits_path):
    "A one-output sigmoid model (is the digit 5 or more?) over image data with real augmentations"
    set_seed(0)
    dls = DataBlock(blocks=(ImageBlock, RegressionBlock), get_items=get_image_files, get_y=lambda p: float(parent_label(p) >= '5'),
                    splitter=GrandparentSplitter(valid_name='valid'), batch_tfms=aug_transforms(**AUG)).dataloaders(digits_path, bs=64, num_workers=0)
    return Learner(dls, nn.Sequential(digits_vision.model, nn.Linear(10, 1)), loss_func=BCEWithLogitsLossFlat())

@pytest.mark.parametrize('mode', ['mean', 'gmean', 'max'])
def test_one_output_sigmoid_binary_model(binary_learner, mode):
    learn, n = binary_learner, 2
    set_seed(8)
    (aug, plain), targs = learn.tta(n=n, mode=mode, beta=None, progress=False)
    raw_aug, raw_plain, ref_t = separate_passes(learn, n, 8)
    p = 1 / (1 + np.exp(-raw_aug))
    ref = {'mean': p.mean(0), 'max': p.max(0), 'gmean': 1 / (1 + np.exp(-raw_aug.mean(0)))}[mode]
    np.testing.assert_allclose(aug.numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(plain.numpy(), 1 / (1 + np.exp(-raw_plain)), atol=1e-5)
    assert aug.shape == (len(ref_t), 1) and not np.allclose(p[0], p[1], atol=1e-3)
    if mode != 'mean': return
    set_seed(8)
    it = ClassificationInterpretation.from_learner(learn, tta=n, progress=False)
    blend = ref + 0.25 * (1 / (1 + np.exp(-raw_plain)) - ref)
    np.testing.assert_allclose(it.probs.numpy(), np.concatenate([1 - blend, blend], 1), atol=1e-5)
    assert torch.equal(it.targs, torch.tensor(ref_t).long()) and torch.equal(it.decoded, torch.tensor(blend[:, 0] > 0.5).long())
    nll = -np.log(np.where(ref_t == 1, blend[:, 0], 1 - blend[:, 0]))
    np.testing.assert_allclose(it.losses.numpy(), nll, rtol=1e-4)
    np.testing.assert_allclose(it.tta_report.loc['un-augmented', 'accuracy'], ((raw_plain[:, 0] > 0) == ref_t).mean())

def test_temperature_is_honoured(digits_vision, aug_dls):
    "A temperature set by calibrate divides the logits of every pass"
    learn, n, T = aug_learner(digits_vision, aug_dls, nn.CrossEntropyLoss()), 2, 2.5
    learn.temperature = T
    set_seed(6)
    (aug, plain), _ = learn.tta(n=n, beta=None, progress=False)
    raw_aug, raw_plain, _ = separate_passes(learn, n, 6)
    np.testing.assert_allclose(aug.numpy(), np_softmax(raw_aug / T).mean(0), atol=1e-5)
    np.testing.assert_allclose(plain.numpy(), np_softmax(raw_plain / T), atol=1e-5)

def by_hand(learn, dl, aug=lambda x: x):
    "Probabilities of `learn.model` on `dl`'s inputs changed by `aug`, computed by hand"
    learn.model.eval()
    with torch.no_grad(): return torch.softmax(torch.cat([learn.model(aug(b[0])).float().cpu() for b in dl]), 1).as_subclass(torch.Tensor)

def test_transforms_given_replace_those_of_the_datasets_kind(digits_vision, learn):
    "item_tfms replace the item transforms and keep the batch ones; batch_tfms the reverse (fastai would drop the others)"
    plain_learn = Learner(digits_vision.dls, digits_vision.model, loss_func=nn.CrossEntropyLoss())  # batch tfms: IntToFloatTensor only
    (aug, plain), _ = plain_learn.tta(n=2, item_tfms=[FlipItem(p=1.), ToTensor()], beta=None, progress=False)
    valid = plain_learn.dls.valid.new(shuffle=False)
    torch.testing.assert_close(aug, by_hand(plain_learn, valid, lambda x: x.flip(-1)), atol=1e-5, rtol=0)  # every image flipped
    torch.testing.assert_close(plain, by_hand(plain_learn, valid), atol=1e-5, rtol=0)  # FlipItem is for training only
    (aug, plain), _ = learn.tta(n=2, batch_tfms=[IntToFloatTensor()], beta=None, progress=False)  # aug_transforms gone
    ref = by_hand(learn, digits_vision.dls.valid.new(shuffle=False))  # the same images under IntToFloatTensor alone
    torch.testing.assert_close(aug, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(plain, ref, atol=1e-5, rtol=0)

class FlipFeatures(Transform):
    "A training-only augmentation of plain feature vectors: their order reversed (targets are left alone)"
    split_idx = 0
    def encodes(self, x:torch.Tensor): return x.flip(-1) if x.is_floating_point() else x

@pytest.mark.parametrize('kw', [dict(batch_tfms=FlipFeatures()), dict(batch_tfms=[FlipFeatures()]), dict(batch_tfms=Pipeline([FlipFeatures()])),
                                dict(item_tfms=FlipFeatures())], ids=['Transform', 'list', 'Pipeline', 'item_tfms'])
def test_plain_dataset_runs_training_only_transforms_given(digits_arrays, kw):
    X, y = digits_arrays
    learn = plain_learner(X, y, nn.CrossEntropyLoss(), 10)
    (aug, plain), targs = learn.tta(n=2, beta=None, progress=False, **kw)
    torch.testing.assert_close(aug, by_hand(learn, learn.dls.valid, lambda x: x.flip(-1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(plain, by_hand(learn, learn.dls.valid), atol=1e-5, rtol=0)
    assert torch.equal(targs, y[len(X) * 4 // 5:])

def test_regression_outputs_averaged_as_they_are(digits_arrays):
    "A regression model's outputs, negative ones too, are blended as fastai does; no accuracy report; no geometric mean"
    X, y = digits_arrays
    learn = plain_learner(X, y.float()[:, None], nn.MSELoss(), 1)
    learn.model.eval()
    xv = torch.stack([x for x, _ in learn.dls.valid.dataset])
    with torch.no_grad(): aug, plain = learn.model(xv.flip(-1)).numpy(), learn.model(xv).numpy()
    assert (np.maximum(aug, plain) < 0).any()  # what a running max started at 0 would lose
    res = learn.tta(n=2, batch_tfms=FlipFeatures(), progress=False)
    np.testing.assert_allclose(res[0].numpy(), aug + 0.25 * (plain - aug), atol=1e-6)
    assert res.report is None and torch.equal(res[1], y[len(X) * 4 // 5:].float()[:, None])
    np.testing.assert_allclose(learn.tta(n=2, batch_tfms=FlipFeatures(), use_max=True, progress=False)[0].numpy(), np.maximum(aug, plain), atol=1e-6)
    with pytest.raises(ValueError, match="mode='gmean' averages log-probabilities.*regression"):
        learn.tta(n=2, batch_tfms=FlipFeatures(), mode='gmean', progress=False)

def test_plain_dataset_needs_augmentations_given(digits_arrays):
    X, y = digits_arrays
    learn = plain_learner(X, y, nn.CrossEntropyLoss(), 10)
    with pytest.raises(TypeError, match='cannot switch to training transforms.*item_tfms= and/or batch_tfms='):
        learn.tta(n=2, progress=False)
    noise = lambda b: (b[0] + 0.05 * torch.randn_like(b[0]), *b[1:])
    set_seed(1)
    (aug, plain), targs = learn.tta(n=2, batch_tfms=noise, beta=None, progress=False)
    ref_plain = torch.softmax(stock_get_preds(learn, act=lambda x: x)[0], 1)
    torch.testing.assert_close(plain, ref_plain, atol=1e-6, rtol=1e-5)  # the un-augmented pass saw no noise
    assert not torch.allclose(aug, plain, atol=1e-4)
    torch.testing.assert_close(aug.sum(1), torch.ones(len(aug)), atol=1e-5, rtol=0)

def test_bad_arguments(learn):
    with pytest.raises(ValueError, match="Unknown TTA mode 'median'"): learn.tta(mode='median')
    with pytest.raises(ValueError, match='number of augmented passes'): learn.tta(n=0)
    with pytest.raises(ValueError, match='beta is a weight between 0 and 1'): learn.tta(beta=2)
    with pytest.raises(ValueError, match='act= and tta='): ClassificationInterpretation.from_learner(learn, tta=2, act=torch.sigmoid)
    with pytest.raises(ValueError, match='they are for tta=True'): ClassificationInterpretation.from_learner(learn, mode='gmean')
    with pytest.raises(ValueError, match='beta=None is for Learner.tta'): ClassificationInterpretation.from_learner(learn, tta=2, beta=None)

def test_progress_bar_shown_unless_silenced(learn, capsys):
    learn.tta(n=2, progress=False)
    assert capsys.readouterr().out == ''
    learn.tta(n=2)
    assert capsys.readouterr().out != ''

# --- the order of the items, whatever the loader
@pytest.fixture(scope='module')
def trained_plain(digits_arrays):
    "A small MLP on the digits feature vectors, trained well enough that a wrong row shows in the accuracy"
    X, y = digits_arrays
    return fit_quietly(plain_learner(X, y, nn.CrossEntropyLoss(), 10), 3)

def probs_by_hand(learn, X, act=lambda o: torch.softmax(o, 1)):
    "The model's probabilities on the inputs `X`, in the order given"
    learn.model.eval()
    with torch.no_grad(): return act(learn.model(X))

def test_callback_refuses_a_shuffled_torch_loader(trained_plain, digits_arrays):
    "A torch DataLoader draws a new order on every pass and does not tell it: refused, not summed into misaligned rows"
    X, y = digits_arrays
    learn, ds = trained_plain, tud.TensorDataset(X, y)
    sdl = tud.DataLoader(ds, batch_size=64, shuffle=True)
    with pytest.raises(ValueError, match='torch DataLoader with a RandomSampler back to the data set.*inference_dl'):
        with learn.no_bar(): learn.get_preds(dl=sdl, cbs=[TTACallback()])
    cb = TTACallback()
    with learn.no_bar():
        for dl in (tud.DataLoader(ds, batch_size=64), inference_dl(sdl), tud.DataLoader(ds, batch_size=100)):
            learn.get_preds(dl=dl, cbs=[cb])
    ref = probs_by_hand(learn, X)
    torch.testing.assert_close(cb.value, ref, atol=1e-6, rtol=0)
    assert torch.equal(cb.targs, y) and (cb.value.argmax(1) == y).float().mean() > 0.8

def test_callback_places_items_of_any_fixed_order(trained_plain, digits_arrays):
    "PartialDL draws a new order without shuffle=True: refused alone, placed right under get_preds (one order a call)"
    X, y = digits_arrays
    learn, items = trained_plain, list(zip(X, y))
    pdl = PartialDL(items, bs=64, partial_n=len(items))
    with pytest.raises(ValueError, match='PartialDL back to the data set: its get_idxs draws another order'):
        with learn.no_bar(): learn.validate(dl=pdl, cbs=[TTACallback()])
    cb = TTACallback()
    for _ in range(3): stock_get_preds(learn, dl=pdl, cbs=[cb])
    torch.testing.assert_close(cb.value, probs_by_hand(learn, X), atol=1e-6, rtol=0)
    assert torch.equal(cb.targs, y)

def test_callback_on_a_subset_refuses_other_items_and_repeats(trained_plain, digits_arrays):
    "A pass over some items gives their rows in data set order; a pass over others, or an item twice, is refused"
    X, y = digits_arrays
    learn, items = trained_plain, list(zip(X, y))
    sub = torch.randperm(len(items), generator=torch.Generator().manual_seed(0))[:300]
    cb = TTACallback()
    for order in (sub, sub.flip(0)):
        stock_get_preds(learn, dl=FaDataLoader(items, bs=64, get_idxs=_ConstantFunc(order.tolist())), cbs=[cb])
    torch.testing.assert_close(cb.value, probs_by_hand(learn, X[sub.sort().values]), atol=1e-6, rtol=0)
    assert torch.equal(cb.targs, y[sub.sort().values])
    with pytest.raises(ValueError, match='Every pass must predict the items of the first: .* but other ones'):
        stock_get_preds(learn, dl=FaDataLoader(items, bs=64, get_idxs=_ConstantFunc(list(range(300)))), cbs=[cb])
    twice = FaDataLoader(items[:3], bs=2, get_idxs=_ConstantFunc([0, 0, 1]))  # three predictions, one item twice
    with pytest.raises(ValueError, match='yields some items more than once'):
        with learn.no_bar(): learn.validate(dl=twice, cbs=[TTACallback()])

def test_callback_refuses_a_distributed_loader(trained_plain, digits_arrays):
    from fastai.distributed import DistributedDL
    learn, items = trained_plain, list(zip(*digits_arrays))
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=0, world_size=1)
    try:
        with pytest.raises(ValueError, match='DistributedDL .*run it on one process'):
            with learn.no_bar(): learn.validate(dl=DistributedDL(FaDataLoader(items, bs=64), 0, 2), cbs=[TTACallback()])
    finally: dist.destroy_process_group()

def test_tta_over_a_torch_loader_in_data_set_order(trained_plain, digits_arrays):
    "A torch DataLoader as dl=, shuffled or not, is predicted over every item in data set order"
    X, y = digits_arrays
    learn, ds = trained_plain, tud.TensorDataset(X, y)
    for tdl in (tud.DataLoader(ds, batch_size=64, shuffle=True, drop_last=True), tud.DataLoader(ds, batch_size=500)):
        (aug, plain), targs = learn.tta(dl=tdl, n=2, batch_tfms=FlipFeatures(), beta=None, progress=False)
        torch.testing.assert_close(aug, probs_by_hand(learn, X.flip(-1)), atol=1e-6, rtol=0)
        torch.testing.assert_close(plain, probs_by_hand(learn, X), atol=1e-6, rtol=0)
        assert torch.equal(targs, y) and (plain.argmax(1) == y).float().mean() > 0.8
    some = tud.DataLoader(ds, sampler=tud.SubsetRandomSampler(range(50)))
    with pytest.raises(ValueError, match='Cannot predict over this torch DataLoader.*SubsetRandomSampler'):
        learn.tta(dl=some, batch_tfms=FlipFeatures(), progress=False)

def test_tta_over_learner_data_loaders_of_torch(digits_arrays):
    "DataLoaders of torch loaders (the training one shuffled, dropping its last batch): ds_idx= gives every item in order"
    X, y = digits_arrays
    ds, n = tud.TensorDataset(X, y), len(X) * 4 // 5
    dls = DataLoaders(tud.DataLoader(tud.Subset(ds, range(n)), batch_size=64, shuffle=True, drop_last=True),
                      tud.DataLoader(tud.Subset(ds, range(n, len(X))), batch_size=128))
    learn = Learner(dls, plain_learner(X, y, nn.CrossEntropyLoss(), 10).model, loss_func=nn.CrossEntropyLoss())
    for ds_idx, items in ((0, slice(0, n)), (1, slice(n, len(X)))):
        (aug, plain), targs = learn.tta(ds_idx=ds_idx, n=2, batch_tfms=FlipFeatures(), beta=None, progress=False)
        torch.testing.assert_close(aug, probs_by_hand(learn, X[items].flip(-1)), atol=1e-6, rtol=0)
        torch.testing.assert_close(plain, probs_by_hand(learn, X[items]), atol=1e-6, rtol=0)
        assert torch.equal(targs, y[items])

# --- outputs that are not one row per item
def test_spatial_outputs_get_undone_transforms_or_a_clear_refusal(digits_arrays):
    "Per-pixel class scores (N, C, H, W): flips undone (see test_segmentation), never a random augmentation averaged"
    X, y = digits_arrays
    imgs = X.view(-1, 1, 8, 8)
    masks = (imgs[:, 0] * 2.99).long()  # three classes of pixels
    items = list(zip(imgs, masks))
    dls = DataLoaders(FaDataLoader(items[:1400], bs=64, shuffle=True), FaDataLoader(items[1400:], bs=128))
    learn = Learner(dls, nn.Conv2d(1, 3, 3, padding=1), loss_func=nn.CrossEntropyLoss())
    noise = lambda b: (b[0] + 0.01 * torch.randn_like(b[0]), *b[1:])
    with pytest.raises(ValueError, match='no way to undo them on its outputs'):
        learn.tta(n=2, batch_tfms=noise, progress=False)
    probs, _ = learn.tta(n=2, progress=False)  # a plain dataset, and no augmentation given: flips, each undone
    assert probs.shape == (len(items) - 1400, 3, 8, 8)
    with pytest.raises(ValueError, match='each augmentation undone before averaging'):
        with learn.no_bar(): learn.validate(cbs=[TTACallback()])

def test_one_output_sigmoid_model_of_shape_n(digits_arrays):
    "A model whose one sigmoid output is flattened to (N,): averaged and scored as a column of one label"
    X, y = digits_arrays
    learn = plain_learner(X, (y >= 5).float(), nn.BCEWithLogitsLoss(), 1, final=nn.Flatten(0))
    res = learn.tta(n=2, batch_tfms=lambda b: (b[0].flip(-1), *b[1:]), progress=False)  # float targets left alone
    xv, t = X[len(X) * 4 // 5:], (y[len(X) * 4 // 5:] >= 5).numpy()
    aug, plain = (probs_by_hand(learn, x, torch.sigmoid).numpy() for x in (xv.flip(-1), xv))
    blend = aug + 0.25 * (plain - aug)
    np.testing.assert_allclose(res[0].numpy(), blend, atol=1e-6)
    assert res[0].shape == (len(xv),)
    acc = [((p > 0.5) == t).mean() for p in (aug, aug, plain, blend)]
    np.testing.assert_allclose(res.report['accuracy'].values, acc)
    nll = lambda p: -np.log(np.where(t == 1, p, 1 - p)).mean()
    np.testing.assert_allclose(res.report['nll'].values, [nll(p) for p in (aug, aug, plain, blend)], rtol=1e-5)

# --- progress: passes named as passes, no training loss
def test_progress_names_each_pass(trained_plain, capsys):
    learn = trained_plain
    learn.tta(n=3, batch_tfms=FlipFeatures())
    out = capsys.readouterr().out
    labels = ['pass 1/3 (augmented) |', 'pass 2/3 (augmented) |', 'pass 3/3 (augmented) |', 'un-augmented pass |']
    assert all(l in out for l in labels) and [out.index(l) for l in labels] == sorted(out.index(l) for l in labels)
    assert 'Epoch' not in out and '...' not in out  # no epochs, and no comment: fastai's is the last training loss
    assert f'{learn.smooth_loss.item():.4f}' not in out

def test_mc_dropout_bar_says_passes_per_batch(digits_arrays, capsys):
    X, y = digits_arrays
    learn = plain_learner(X, y, nn.CrossEntropyLoss(), 10)
    learn.model = nn.Sequential(*learn.model[:2], nn.Dropout(0.3), learn.model[2])
    mc_dropout(learn, 5, seed=0)
    out = capsys.readouterr().out
    assert 'MC dropout: 5 passes per batch |' in out and 'Epoch' not in out and '...' not in out
    mc_dropout(learn, 5, seed=0, progress=False)
    with learn.no_bar(): mc_dropout(learn, 5, seed=0)
    assert capsys.readouterr().out == ''
