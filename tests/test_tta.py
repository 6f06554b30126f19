"Test-time augmentation: probabilities averaged, rows summing to 1, in one O(N x C) buffer, checked against separate passes"
import numpy as np, pytest, torch
import torch.nn as nn
from fastai.vision.all import (aug_transforms, set_seed, Learner, CrossEntropyLossFlat, BCEWithLogitsLossFlat, DataBlock,
                               ImageBlock, MultiCategoryBlock, GrandparentSplitter, get_image_files, parent_label)
from fastai.vision.all import ImageDataLoaders

import fastinterp
from fastinterp import ClassificationInterpretation, TTACallback
from fastinterp.preds import stock_get_preds
from conftest import plain_learner

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
    if mode == 'mean': agg = p_aug.mean(0)
    elif mode == 'gmean': agg = np_softmax(np.log(p_aug).mean(0))
    else: agg = p_aug.max(0); agg = agg / agg.sum(1, keepdims=True)
    ref = np.maximum(agg, p_plain) if mode == 'max' else agg + beta * (p_plain - agg)
    if mode == 'max': ref = ref / ref.sum(1, keepdims=True)
    assert not np.allclose(p_aug[0], p_aug[1], atol=1e-3)  # the augmentations did change the inputs
    np.testing.assert_allclose(probs.numpy(), ref, atol=1e-5)
    np.testing.assert_array_equal(targs.numpy(), ref_t)
    torch.testing.assert_close(probs.sum(1), torch.ones(len(probs)), atol=1e-5, rtol=0)
    assert (probs >= 0).all()

def test_mean_equals_stock_fastai_where_stock_is_right(digits_vision, aug_dls):
    "With CrossEntropyLossFlat stock fastai averages probabilities too: same seed, same numbers"
    learn = aug_learner(digits_vision, aug_dls, CrossEntropyLossFlat())
    set_seed(3)
    ours, _ = learn.tta(n=2, progress=False)
    fastinterp.unpatch()
    try:
        set_seed(3)
        with learn.no_bar(): stock, _ = learn.tta(n=2)
    finally: fastinterp.patch()
    torch.testing.assert_close(ours, stock, atol=1e-6, rtol=1e-5)

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
    p_max, _ = learn.tta(n=n, use_max=True, progress=False)
    agg = np_softmax(raw_aug).max(0)
    ref = np.maximum(agg / agg.sum(1, keepdims=True), np_softmax(raw_plain))
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

def test_shuffled_training_set_comes_back_in_dataset_order(learn):
    "The training DataLoader shuffles and drops its last batch: every item still comes back, in dataset order"
    probs, targs = learn.tta(ds_idx=0, n=1, progress=False)
    ds = learn.dls.train_ds
    assert len(probs) == len(ds)
    ref = torch.tensor([learn.dls.vocab.o2i[p.parent.name] for p in ds.items])
    assert torch.equal(targs.view(-1).cpu(), ref)

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

def test_interpretation_from_tta_unlabelled(learn):
    dl = learn.dls.test_dl(learn.dls.valid.items[:40])
    it = ClassificationInterpretation.from_learner(learn, dl=dl, tta=2, progress=False)
    assert not it.labelled and it.tta_report is None and len(it.probs) == 40
    assert len(it.most_uncertain(5)[1]) == 5

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
    with pytest.raises(TypeError, match='act= and tta='): ClassificationInterpretation.from_learner(learn, tta=2, act=torch.sigmoid)
    with pytest.raises(TypeError, match='they are for tta=True'): ClassificationInterpretation.from_learner(learn, mode='gmean')
    with pytest.raises(ValueError, match='beta=None is for Learner.tta'): ClassificationInterpretation.from_learner(learn, tta=2, beta=None)

def test_progress_bar_shown_unless_silenced(learn, capsys):
    learn.tta(n=2, progress=False)
    assert capsys.readouterr().out == ''
    learn.tta(n=2)
    assert capsys.readouterr().out != ''
