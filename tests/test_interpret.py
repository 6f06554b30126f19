"ClassificationInterpretation: one inference pass, every view checked against an independent computation"
import re, warnings
import numpy as np, pandas as pd, pytest, torch
import torch.nn as nn
import torch.nn.functional as F
import sklearn.metrics as skm
from scipy.stats import entropy as sp_entropy
import matplotlib.pyplot as plt
import fastai.interpret

import fastinterp
from fastinterp.interpret import ClassificationInterpretation
from fastinterp.data import digits_learner
from conftest import raw_outputs, plain_learner, fit_quietly, count_loads

class ForwardCounter:
    "Counts the model's forward calls: inference passes show up here"
    def __init__(self, model): self.n = 0; self.h = model.register_forward_hook(self.hook)
    def hook(self, *args): self.n += 1
    def remove(self): self.h.remove()

@pytest.fixture(scope='module')
def interp(digits_vision):
    return ClassificationInterpretation.from_learner(digits_vision)

def non_plot_views(it, cls):
    it.top_losses(5); it.most_uncertain(5); it.most_uncertain(5, 'margin', cls=cls); it.most_uncertain(3, cls=cls, by='target')
    it.most_correct(cls, 3); it.most_incorrect(cls, 3); it.confusion_matrix(); it.confusion_matrix('true')
    it.most_confused(); it.classification_report(); it.to_df(); it[[0, 1]]

def test_one_inference_pass_vision(digits_vision):
    counter = ForwardCounter(digits_vision.model)
    try:
        it = ClassificationInterpretation.from_learner(digits_vision)
        assert counter.n == len(digits_vision.dls.valid)
        non_plot_views(it, '8')
        assert counter.n == len(digits_vision.dls.valid)
    finally: counter.remove()
    assert isinstance(it, fastai.interpret.ClassificationInterpretation)

def test_one_inference_pass_tabular(wine_tabular):
    learn, _ = wine_tabular
    counter = ForwardCounter(learn.model)
    try:
        it = ClassificationInterpretation.from_learner(learn)
        n = counter.n
        assert n == len(learn.dls.valid)
        non_plot_views(it, 'class_1')
        assert counter.n == n
    finally: counter.remove()
    probs = it.probs.numpy()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(it.to_df()['p_pred'], probs.max(1), rtol=1e-6)

@pytest.mark.parametrize('streaming', [False, True])
@pytest.mark.parametrize('labelled', [True, False])
def test_build_loads_each_item_once(digits_vision, digits_path, monkeypatch, streaming, labelled):
    "Whether the loader has targets is seen in the pass: no batch is fetched before it (it was, to find out)"
    files = sorted((digits_path/'valid').rglob('*.png'))[:150]
    dl = digits_vision.dls.test_dl(files, with_labels=labelled)
    loads = count_loads(monkeypatch)
    it = ClassificationInterpretation.from_learner(digits_vision, dl=dl, streaming=streaming, progress=False)
    assert sorted(loads) == list(range(150))
    assert it.labelled == labelled
    if labelled: assert it.top_losses(3)[1].shape == (3,)
    else:
        with pytest.raises(ValueError, match='unlabelled|needs targets|no targets'): it.top_losses(3)

def test_cached_values_match_reference(interp, reference):
    probs, targs, losses = reference
    np.testing.assert_allclose(interp.probs.numpy(), probs, atol=1e-6)
    np.testing.assert_array_equal(interp.targs.numpy(), targs)
    np.testing.assert_array_equal(interp.decoded.numpy(), probs.argmax(1))
    np.testing.assert_allclose(interp.losses.numpy(), losses, rtol=1e-5, atol=1e-6)

@pytest.mark.parametrize('k', [1, 5, None, 10_000])
def test_top_losses(interp, reference, k):
    _, _, losses = reference
    vals, idxs = interp.top_losses(k)
    n = len(losses) if k is None else min(k, len(losses))
    assert len(idxs) == n
    np.testing.assert_allclose(vals.numpy(), np.sort(losses)[::-1][:n], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(losses[idxs.numpy()], vals.numpy(), rtol=1e-5, atol=1e-6)
    small, _ = interp.top_losses(3, largest=False)
    np.testing.assert_allclose(small.numpy(), np.sort(losses)[:3], rtol=1e-5, atol=1e-6)

@pytest.mark.parametrize('measure,ref', [
    ('entropy', lambda p: sp_entropy(p, axis=1) / np.log(p.shape[1])),
    ('margin', lambda p: 1 - (np.sort(p, 1)[:, -1] - np.sort(p, 1)[:, -2])),
    ('least_confidence', lambda p: 1 - p.max(1)),
])
def test_most_uncertain(interp, reference, measure, ref):
    probs, targs, _ = reference
    scores = ref(probs.astype(np.float64))
    vals, idxs = interp.most_uncertain(10, measure)
    np.testing.assert_allclose(vals.numpy(), np.sort(scores)[::-1][:10], atol=1e-5)
    for cls, by, src in [('8', 'pred', probs.argmax(1)), ('3', 'target', targs)]:
        c = int(cls)
        vals, idxs = interp.most_uncertain(None, measure, cls=cls, by=by)
        assert set(idxs.tolist()) == set(np.flatnonzero(src == c).tolist())
        np.testing.assert_allclose(vals.numpy(), np.sort(scores[src == c])[::-1], atol=1e-5)

def test_most_correct_and_incorrect(interp, reference):
    probs, targs, _ = reference
    pred = probs.argmax(1)
    for c in range(10):
        right = np.flatnonzero((targs == c) & (pred == c))
        wrong = np.flatnonzero((targs == c) & (pred != c))
        vals, idxs = interp.most_correct(str(c))
        assert set(idxs.tolist()) == set(right.tolist())
        np.testing.assert_allclose(vals.numpy(), np.sort(probs[right, c])[::-1], atol=1e-6)
        vals, idxs = interp.most_incorrect(str(c), k=2)
        np.testing.assert_allclose(vals.numpy(), np.sort(probs[wrong, c])[:2], atol=1e-6)
        assert all(pred[i] != c and targs[i] == c for i in idxs.tolist())

@pytest.mark.parametrize('normalize', [None, 'true', 'pred', 'all'])
def test_confusion_matrix_equals_sklearn(interp, reference, normalize):
    probs, targs, _ = reference
    ref = skm.confusion_matrix(targs, probs.argmax(1), labels=range(10), normalize=normalize)
    np.testing.assert_allclose(interp.confusion_matrix(normalize), ref)

def test_most_confused_and_report(interp, reference):
    probs, targs, _ = reference
    pred = probs.argmax(1)
    pairs = {}
    for t, p in zip(targs, pred):
        if t != p: pairs[(str(t), str(p))] = pairs.get((str(t), str(p)), 0) + 1
    got = interp.most_confused()
    assert {(a, b): n for a, b, n in got} == pairs
    assert [n for *_, n in got] == sorted(pairs.values(), reverse=True)
    assert all(n >= 2 for *_, n in interp.most_confused(min_val=2))
    assert interp.classification_report() == skm.classification_report(targs, pred, labels=list(range(10)),
                                                    target_names=[str(i) for i in range(10)], zero_division=0)

def test_to_df(interp, reference):
    probs, targs, losses = reference
    df = interp.to_df()
    assert list(df.columns) == ['item', 'target', 'prediction', 'p_pred', 'p_target', 'loss',
                                'entropy', 'margin', 'least_confidence', 'uniform_distance']
    assert len(df) == len(probs) and df['item'][0].endswith('.png')
    np.testing.assert_allclose(df['p_target'], probs[np.arange(len(probs)), targs], atol=1e-6)
    np.testing.assert_allclose(df['loss'], losses, rtol=1e-5, atol=1e-6)
    assert (df['target'] == [str(t) for t in targs]).all()

def test_class_not_in_vocab(interp):
    with pytest.raises(ValueError, match=r"Class 'eleven' is not in the vocab: \['0', '1',"):
        interp.most_correct('eleven')
    with pytest.raises(ValueError, match="by must be 'pred' or 'target'"): interp.most_uncertain(3, cls='3', by='label')

def titles(fig): return [ax.get_title() for ax in fig.axes if ax.get_title()]

def test_plot_top_losses_titles_hold_the_numbers(interp, reference, tmp_path):
    probs, targs, losses = reference
    interp.plot_top_losses(6)
    fig = plt.gcf()
    fig.savefig(tmp_path/'top_losses.png')
    _, idxs = interp.top_losses(6)
    ts = titles(fig)
    assert len(ts) == 6
    for t, i in zip(ts, idxs.tolist()):
        m = re.match(r"pred (\d): ([\d.<>]+) · given (\d): ([\d.<>]+)\nloss ([\d.e-]+)", t)
        assert m, t
        d, pd_, tt, pt, l = m.groups()
        assert int(d) == probs[i].argmax() and int(tt) == targs[i]
        assert abs(float(pd_.strip('<>')) - probs[i].max()) < 0.006 and abs(float(pt.strip('<>')) - probs[i, targs[i]]) < 0.006
        assert abs(float(l) - losses[i]) < 0.006
    plt.close(fig)

def test_plot_most_uncertain_and_class_views(interp, tmp_path):
    interp.plot_most_uncertain(9)
    fig = plt.gcf()
    fig.savefig(tmp_path/'most_uncertain.png')
    vals, idxs = interp.most_uncertain(9)
    plt.close(fig)
    shown = []
    for t, i, v in zip(titles(fig), idxs.tolist(), vals.tolist()):
        top = interp.probs[i].topk(3)
        assert t.split(':')[0] == str(int(top.indices[0]))
        shown.append(t.split('entropy ')[1])
        assert abs(float(shown[-1]) - v) <= 0.5 * 10 ** -len(shown[-1].split('.')[1])  # rounded, not truncated or made up
    assert len(set(shown)) == len(set(vals.tolist()))  # different scores read differently
    for plot in (lambda: interp.plot_most_correct('3', 4), lambda: interp.plot_most_incorrect('9', 4),
                 lambda: interp.plot_most_uncertain(4, cls='8', by='target')):
        plot()
        f = plt.gcf()
        assert 1 <= len(titles(f)) <= 4
        plt.close(f)

def test_honest_numbers_in_titles(digits_vision):
    "A 0.9986 beside a wrong prediction never prints as 1.00, and two different probabilities never print the same"
    dl = digits_vision.dls.valid
    n = len(dl.dataset)
    probs = torch.full((n, 10), 1e-5)
    probs[:, 3] = 1 - 9e-5            # p(3) = 0.99991
    probs[0] = torch.tensor([0.0012, 0.9986, 0.0002] + [0.] * 7)
    probs[1] = torch.tensor([0.501, 0.499] + [0.] * 8)
    targs = torch.full((n,), 3); targs[0] = 0; targs[1] = 1
    losses = F.nll_loss(probs.log(), targs, reduction='none')
    it = ClassificationInterpretation(digits_vision, dl, probs, targs, probs.argmax(1), losses)
    t = it._title(0, loss=True)
    assert t.startswith('pred 1: 0.9986 · given 0: 0.0012') and '1.00' not in t
    assert it._title(1).startswith('pred 0: 0.501 · given 1: 0.499')
    assert '>0.9999' not in it._title(2) and '0.9999' in it._title(2)

def test_unlabelled_test_dl(digits_vision, digits_path):
    files = sorted((digits_path/'valid').rglob('*.png'))[:50]
    dl = digits_vision.dls.test_dl(files)
    it = ClassificationInterpretation.from_learner(digits_vision, dl=dl)
    assert it.targs is None and it.losses is None and not it.labelled
    vals, idxs = it.most_uncertain(5)
    assert len(idxs) == 5
    df = it.to_df()
    assert 'loss' not in df and 'target' not in df and len(df) == 50
    with pytest.raises(ValueError, match='unlabelled.*most_uncertain'): it.top_losses(3)
    it.plot_most_uncertain(4); plt.close(plt.gcf())

def test_binary_one_output_sigmoid(digits_arrays):
    X, y = digits_arrays
    learn = fit_quietly(plain_learner(X, (y % 2).float()[:, None], nn.BCEWithLogitsLoss(), 1), 2)
    it = ClassificationInterpretation.from_learner(learn)
    raw = raw_outputs(learn, learn.dls.valid).view(-1)
    p = torch.sigmoid(raw)
    torch.testing.assert_close(it.probs, torch.stack([1 - p, p], 1))
    t = (y[len(X) * 4 // 5:] % 2).numpy()
    np.testing.assert_array_equal(it.confusion_matrix(), skm.confusion_matrix(t, (p > 0.5).long().numpy(), labels=[0, 1]))
    assert len(it.most_uncertain(5)[1]) == 5
    bce = -(t * np.log(p.numpy()) + (1 - t) * np.log(1 - p.numpy()))  # per item, by hand
    losses, idxs = it.top_losses(5)
    np.testing.assert_array_equal(idxs.numpy(), np.argsort(-bce, kind='stable')[:5])
    np.testing.assert_allclose(losses.numpy(), np.sort(bce)[::-1][:5], rtol=1e-4)

def test_multilabel(digits_arrays):
    X, y = digits_arrays
    targ = torch.stack([y % 2 == 0, y >= 5, y == 0], 1).float()  # even, big, zero
    learn = fit_quietly(plain_learner(X, targ, nn.BCEWithLogitsLoss(), 3), 3)
    it = ClassificationInterpretation.from_learner(learn)
    p = torch.sigmoid(raw_outputs(learn, learn.dls.valid)).numpy()
    t = targ[len(X) * 4 // 5:].numpy().astype(int)
    assert it.multilabel
    np.testing.assert_array_equal(it.confusion_matrix(), skm.multilabel_confusion_matrix(t, (p > 0.5).astype(int)))
    scores = 1 - np.abs(p - 0.5).min(1) / 0.5
    np.testing.assert_allclose(it.most_uncertain(5)[0].numpy(), np.sort(scores)[::-1][:5], atol=1e-5)
    bt = it.best_thresholds()
    for l in range(3):
        f1 = max(skm.f1_score(t[:, l], (p[:, l] >= th).astype(int)) for th in np.unique(p[:, l]))
        assert abs(bt['f1'][l] - f1) < 1e-6 and 0 < bt['threshold'][l] < 1
    assert set(it.to_df().columns) >= {'item', 'target', 'prediction', 'p(0)', 'loss', 'uncertainty'}
    vals, idxs = it.most_incorrect(1)
    assert all(t[i, 1] == 1 and p[i, 1] <= 0.5 for i in idxs.tolist())

def test_regression_is_refused(digits_arrays):
    X, y = digits_arrays
    learn = plain_learner(X, y.float()[:, None], nn.MSELoss(), 1)
    with pytest.raises(ValueError, match='needs class probabilities.*regression loss'): ClassificationInterpretation.from_learner(learn)

def test_nan_outputs_are_refused(digits_path):
    class NaNRows(nn.Module):
        def forward(self, x): x = x.clone(); x[:2] = float('nan'); return x
    learn = digits_learner(digits_path, final=NaNRows())
    n_batches = len(learn.dls.valid)
    with pytest.raises(ValueError, match=rf'{2 * n_batches} of 359 rows of the model outputs hold NaN or inf'):
        ClassificationInterpretation.from_learner(learn)

def test_empty_dataloader(digits_vision):
    dl = digits_vision.dls.valid.new(digits_vision.dls.valid_ds.new_empty())
    with pytest.raises(ValueError, match='empty DataLoader'): ClassificationInterpretation.from_learner(digits_vision, dl=dl)

def test_confusion_plot_scales_to_100_classes(tmp_path):
    from fastinterp.show import plot_confusion
    rng = np.random.default_rng(0)
    t = rng.integers(0, 100, 20_000); d = np.where(rng.random(20_000) < 0.8, t, rng.integers(0, 100, 20_000))
    cm = skm.confusion_matrix(t, d)
    fig = plot_confusion(cm, [f'class{i}' for i in range(100)])
    fig.savefig(tmp_path/'cm100.png')
    ax = fig.axes[0]
    assert len(ax.texts) == 0 and 15 <= fig.get_size_inches()[0] <= 18
    plt.close(fig)
    fig = plot_confusion(cm[:10, :10], [str(i) for i in range(10)])
    assert len(fig.axes[0].texts) == 100
    plt.close(fig)

def test_fastai_name_gives_fastinterp_interpretation(digits_vision):
    "After `import fastinterp`, fastai's own `ClassificationInterpretation.from_learner` (a star import's name) gives ours"
    it = fastai.interpret.ClassificationInterpretation.from_learner(digits_vision)
    assert type(it) is ClassificationInterpretation and it.probs is not None
    fastinterp.unpatch()
    try: assert type(fastai.interpret.ClassificationInterpretation.from_learner(digits_vision)) is fastai.interpret.ClassificationInterpretation
    finally: fastinterp.patch()

def test_soft_targets_and_act_with_an_unknown_loss(digits_arrays):
    X, y = digits_arrays
    learn = fit_quietly(plain_learner(X, F.one_hot(y, 10).float(), nn.CrossEntropyLoss(), 10), 2)
    it = ClassificationInterpretation.from_learner(learn)
    t = y[len(X) * 4 // 5:].numpy()
    p = torch.softmax(raw_outputs(learn, learn.dls.valid), 1).numpy()
    np.testing.assert_array_equal(it.confusion_matrix(), skm.confusion_matrix(t, p.argmax(1), labels=range(10)))
    class Unregistered(nn.Module):
        def forward(self, out, targ): return F.cross_entropy(out, targ)
    learn = plain_learner(X, y, Unregistered(), 10)
    with pytest.warns(UserWarning, match='no `reduction` argument'):
        it = ClassificationInterpretation.from_learner(learn, act=lambda o: torch.softmax(o, 1))
    with pytest.raises(ValueError, match='No per-item losses'): it.top_losses(3)
    assert 'loss' not in it.to_df() and len(it.most_uncertain(3)[1]) == 3
    assert it.decoded.shape == (len(t),) and torch.equal(it.decoded, it.probs.argmax(1))

def test_registered_multilabel_threshold_is_kept(digits_arrays):
    X, y = digits_arrays
    @fastinterp.register_activation(act='sigmoid', kind='multilabel', thresh=0.3)
    def tags_loss(out, targ, reduction='mean'): return F.binary_cross_entropy_with_logits(out, targ, reduction=reduction)
    targ = torch.stack([y % 2 == 0, y >= 5], 1).float()
    learn = fit_quietly(plain_learner(X, targ, nn.BCEWithLogitsLoss(), 2), 1)
    learn.loss_func = tags_loss
    p, _, d = learn.get_preds(with_decoded=True)
    assert torch.equal(d, p > 0.3)
    it = ClassificationInterpretation.from_learner(learn)
    assert it.thresh == 0.3 and torch.equal(it.decoded, (p > 0.3).long())

def test_class_by_index_in_a_folder_vocab_and_bad_k(interp, wine_tabular):
    assert torch.equal(interp.most_correct(3)[1], interp.most_correct('3')[1])
    with pytest.raises(ValueError, match='k must be a number of items'): interp.top_losses(-1)
    learn, df = wine_tabular
    it = ClassificationInterpretation.from_learner(learn)
    assert len(it.items([0, 1])) == 2 and len(it.items(torch.tensor([2]))) == 1
