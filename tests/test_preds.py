"`get_preds` and `predict` return probabilities and classes on real learners, whatever the loss"
import functools, gc, warnings
import pytest, torch
import torch.nn as nn
import torch.nn.functional as F
from fastai.losses import (CrossEntropyLossFlat, FocalLossFlat, FocalLoss, LabelSmoothingCrossEntropy,
    LabelSmoothingCrossEntropyFlat, BCEWithLogitsLossFlat, BCELossFlat, MSELossFlat)
from fastai.callback.core import Callback

import fastinterp
from fastinterp.preds import stock_get_preds
from fastinterp.uncertainty import mc_dropout
from fastinterp.data import digits_learner, digits_cnn
from conftest import raw_outputs, plain_learner, fit_quietly, count_looks

def test_vision_plain_cross_entropy(digits_vision):
    learn = digits_vision
    probs, targs, dec = learn.get_preds(with_decoded=True)
    raw = raw_outputs(learn, learn.dls.valid)
    torch.testing.assert_close(probs.sum(1), torch.ones(len(probs)), atol=1e-5, rtol=0)
    torch.testing.assert_close(probs, torch.softmax(raw, 1), atol=1e-6, rtol=1e-5)
    assert torch.equal(dec, raw.argmax(1))
    assert (dec == targs).float().mean() > 0.8  # the model did learn
    # stock fastai hands back the raw logits, twice
    sp, _, sd = stock_get_preds(learn, with_decoded=True)
    torch.testing.assert_close(sp, raw, atol=1e-5, rtol=1e-5)
    assert torch.equal(sd, sp)

def test_unpatch_gives_stock_fastai_back(digits_vision):
    learn = digits_vision
    raw = raw_outputs(learn, learn.dls.valid)
    fastinterp.unpatch()
    try:
        assert not fastinterp.is_patched()
        p, _, d = learn.get_preds(with_decoded=True)
        torch.testing.assert_close(p, raw, atol=1e-5, rtol=1e-5)
        assert torch.equal(d, p)
    finally: fastinterp.patch()
    fastinterp.patch()  # idempotent
    p, _, d = learn.get_preds(with_decoded=True)
    torch.testing.assert_close(p, torch.softmax(raw, 1), atol=1e-6, rtol=1e-5)

def test_get_preds_options_behave_as_in_fastai(digits_vision):
    learn = digits_vision
    inp, probs, targs, dec, losses = learn.get_preds(with_input=True, with_decoded=True, with_loss=True)
    s_inp, s_raw, s_targs, s_losses = stock_get_preds(learn, with_input=True, with_loss=True)
    assert torch.equal(inp, s_inp) and torch.equal(targs, s_targs)
    torch.testing.assert_close(losses, s_losses)
    torch.testing.assert_close(losses, F.cross_entropy(s_raw, targs, reduction='none'), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(probs, torch.softmax(s_raw, 1))
    assert torch.equal(dec, probs.argmax(1))
    # reorder: a shuffled loader still comes back in data set order
    dl = learn.dls.valid.new(shuffle=True)
    p2, t2 = learn.get_preds(dl=dl)
    assert torch.equal(t2, targs)
    torch.testing.assert_close(p2, probs)
    # act= still overrides; decoded follows the loss
    p3, _, d3 = learn.get_preds(act=lambda o: torch.log_softmax(o, 1), with_decoded=True)
    torch.testing.assert_close(p3, torch.log_softmax(s_raw, 1), atol=1e-5, rtol=1e-5)
    assert torch.equal(d3, s_raw.argmax(1))
    # cbs run, inner=True works as in fastai
    class CountBatches(Callback):
        n = 0
        def after_batch(self): self.n += 1
    cb = CountBatches()
    learn.get_preds(cbs=[cb])
    assert cb.n == len(learn.dls.valid)
    p4, _ = learn.get_preds(inner=True)
    torch.testing.assert_close(p4, probs)

def test_fastai_losses_unchanged_by_the_patch(digits_path):
    for loss in (CrossEntropyLossFlat(), FocalLossFlat(), LabelSmoothingCrossEntropyFlat(), LabelSmoothingCrossEntropy()):
        learn = fit_quietly(digits_learner(digits_path, loss_func=loss), 1)
        p, t, d = learn.get_preds(with_decoded=True)
        sp, st, sd = stock_get_preds(learn, with_decoded=True)
        assert torch.equal(p, sp) and torch.equal(d, sd), loss
        torch.testing.assert_close(p.sum(1), torch.ones(len(p)), atol=1e-5, rtol=0)

@pytest.mark.parametrize('loss', [functools.partial(F.cross_entropy, label_smoothing=0.1), F.cross_entropy,
                                  nn.CrossEntropyLoss(label_smoothing=0.1), nn.CrossEntropyLoss(weight=torch.linspace(0.5, 1.5, 10)),
                                  type('MyCE', (nn.CrossEntropyLoss,), {})(), FocalLoss()], ids=repr)
def test_vision_softmax_losses(digits_path, loss):
    learn = fit_quietly(digits_learner(digits_path, loss_func=loss), 1)
    p, t, d = learn.get_preds(with_decoded=True)
    raw = raw_outputs(learn, learn.dls.valid)
    torch.testing.assert_close(p, torch.softmax(raw, 1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(p.sum(1), torch.ones(len(p)), atol=1e-5, rtol=0)
    assert torch.equal(d, raw.argmax(1))

def _onehot(y, c=10): return F.one_hot(y, c).float()

PLAIN = [ # loss, n_out, final layer, target builder, reference of raw outputs -> probabilities, decodes
    (nn.CrossEntropyLoss(),              10, None,              lambda y: y,                 lambda o: torch.softmax(o, 1), lambda p: p.argmax(1)),
    (nn.NLLLoss(),                       10, nn.LogSoftmax(1),  lambda y: y,                 torch.exp,                     lambda p: p.argmax(1)),
    (F.nll_loss,                         10, nn.LogSoftmax(1),  lambda y: y,                 torch.exp,                     lambda p: p.argmax(1)),
    (nn.KLDivLoss(reduction='batchmean'),10, nn.LogSoftmax(1),  _onehot,                     torch.exp,                     lambda p: p.argmax(1)),
    (nn.BCEWithLogitsLoss(),             10, None,              _onehot,                     torch.sigmoid,                 lambda p: p > 0.5),
    (F.binary_cross_entropy_with_logits, 1,  None,              lambda y: (y % 2).float()[:, None], torch.sigmoid,          lambda p: p > 0.5),
    (nn.MultiLabelSoftMarginLoss(),      10, None,              _onehot,                     torch.sigmoid,                 lambda p: p > 0.5),
    (nn.BCELoss(),                       10, nn.Sigmoid(),      _onehot,                     lambda o: o,                   lambda p: p > 0.5),
    (F.binary_cross_entropy,             1,  nn.Sigmoid(),      lambda y: (y % 2).float()[:, None], lambda o: o,            lambda p: p > 0.5),
    (BCEWithLogitsLossFlat(thresh=0.3),  10, None,              _onehot,                     torch.sigmoid,                 lambda p: p > 0.3),
    (BCELossFlat(),                      10, nn.Sigmoid(),      _onehot,                     lambda o: o,                   lambda p: p > 0.5),
    (nn.MSELoss(),                       1,  None,              lambda y: y.float()[:, None], lambda o: o,                  lambda p: p),
    (nn.L1Loss(),                        1,  None,              lambda y: y.float()[:, None], lambda o: o,                  lambda p: p),
    (nn.SmoothL1Loss(),                  1,  None,              lambda y: y.float()[:, None], lambda o: o,                  lambda p: p),
    (nn.HuberLoss(),                     1,  None,              lambda y: y.float()[:, None], lambda o: o,                  lambda p: p),
    (MSELossFlat(),                      1,  None,              lambda y: y.float(),          lambda o: o,                  lambda p: p),
]

@pytest.mark.parametrize('loss,n_out,final,targ,ref,ref_dec', PLAIN, ids=[repr(c[0])[:50] for c in PLAIN])
def test_plain_learner_every_loss(digits_arrays, loss, n_out, final, targ, ref, ref_dec):
    X, y = digits_arrays
    learn = fit_quietly(plain_learner(X, targ(y), loss, n_out, final), 1)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        p, t, d = learn.get_preds(with_decoded=True)
    raw = raw_outputs(learn, learn.dls.valid)
    torch.testing.assert_close(p, ref(raw), atol=1e-6, rtol=1e-5)
    assert torch.equal(d, ref_dec(p))
    kind = fastinterp.activation_for(loss).kind
    if kind == 'multiclass': torch.testing.assert_close(p.sum(1), torch.ones(len(p)), atol=1e-5, rtol=0)
    if kind == 'multilabel': assert p.min() >= 0 and p.max() <= 1 and d.dtype == torch.bool
    # fastai's own losses: the same probabilities with and without the patch
    if hasattr(loss, 'activation'):
        torch.testing.assert_close(p, stock_get_preds(learn)[0])

def test_plain_learner_predict(digits_arrays):
    X, y = digits_arrays
    learn = fit_quietly(plain_learner(X, y, nn.CrossEntropyLoss(), 10), 3)
    n = len(X) * 4 // 5
    hits = 0
    for i in range(n, n + 20):
        label, dec, probs = learn.predict(X[i])
        ref = torch.softmax(raw_outputs(learn, [(X[i:i+1],)])[0], 0)
        torch.testing.assert_close(probs, ref, atol=1e-6, rtol=1e-5)
        assert int(dec) == int(ref.argmax()) and int(label) == int(dec)
        hits += int(dec) == int(y[i])
    assert hits >= 15

def test_vision_predict(digits_vision, digits_path):
    learn = digits_vision
    files = sorted((digits_path/'valid'/'7').glob('*.png'))[:5]
    dl = learn.dls.test_dl(files)
    ref = torch.softmax(raw_outputs(learn, dl), 1)
    for f, r in zip(files, ref):
        label, dec, probs = learn.predict(f)
        torch.testing.assert_close(probs, r, atol=1e-6, rtol=1e-5)
        assert label == learn.dls.vocab[int(r.argmax())] and int(dec) == int(r.argmax())
        assert abs(float(probs.sum()) - 1) < 1e-5

def test_tabular_predict_and_get_preds(wine_tabular):
    learn, df = wine_tabular
    p, t, d = learn.get_preds(with_decoded=True)
    torch.testing.assert_close(p.sum(1), torch.ones(len(p)), atol=1e-5, rtol=0)
    learn.model.eval()
    with torch.no_grad(): raw = torch.cat([learn.model(b[0], b[1]) for b in learn.dls.valid])
    torch.testing.assert_close(p, torch.softmax(raw, 1), atol=1e-6, rtol=1e-5)
    assert torch.equal(d, raw.argmax(1)) and (d == t.view(-1)).float().mean() > 0.85
    right = 0
    for i in learn.dls.valid.items.index[:15]:
        row = df.loc[i]
        (label, dec, probs) = learn.predict(row)
        assert abs(float(probs.sum()) - 1) < 1e-5 and probs.argmax() == dec
        right += row['target'] == learn.dls.vocab[int(dec)]
        assert int(label.items.iloc[0]['target']) == int(dec)  # fastai's tabular decoding keeps the index
    assert right >= 12

def test_double_softmax_is_warned_once(digits_path):
    learn = digits_learner(digits_path, final=nn.Softmax(1))
    with pytest.warns(UserWarning, match=r'already look like a softmax.*remove the final softmax'): learn.get_preds()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        learn.get_preds()

@pytest.mark.parametrize('final,loss,match', [
    (nn.LogSoftmax(1), nn.CrossEntropyLoss(), r'log-softmax.*NLLLoss'),
    (nn.Softmax(1), nn.NLLLoss(), r'softmax.*log-softmax'),
])
def test_double_activation_variants(digits_path, final, loss, match):
    with pytest.warns(UserWarning, match=match): digits_learner(digits_path, loss_func=loss, final=final).get_preds()

def test_nll_with_log_softmax_does_not_warn(digits_path):
    learn = digits_learner(digits_path, loss_func=nn.NLLLoss(), final=nn.LogSoftmax(1))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        p, _ = learn.get_preds()
    torch.testing.assert_close(p.sum(1), torch.ones(len(p)), atol=1e-5, rtol=0)

def test_softmax_over_one_output_warns(digits_path):
    learn = digits_learner(digits_path, n_out=1)
    dl = learn.dls.test_dl(sorted((digits_path/'valid'/'1').glob('*.png')))  # unlabelled: no loss to compute
    with pytest.warns(UserWarning, match=r'ONE output.*always 1\.0.*BCEWithLogitsLoss'): p, = learn.get_preds(dl=dl)[:1]
    assert torch.all(p == 1)

def test_outputs_that_do_not_fit_the_kind(digits_path):
    learn = digits_learner(digits_path, n_out=1, final=nn.Flatten(0))
    dl = learn.dls.test_dl(sorted((digits_path/'valid'/'1').glob('*.png')))
    with pytest.raises(ValueError, match=r'multi-class loss.*shape \(\d+,\)'): learn.get_preds(dl=dl)

def test_unknown_loss_returns_outputs_unchanged(digits_path):
    def my_ce(out, targ): return F.cross_entropy(out, targ)
    learn = digits_learner(digits_path, loss_func=my_ce)
    with pytest.warns(UserWarning, match=r'my_ce.*unchanged.*register_activation'): p, t, d = learn.get_preds(with_decoded=True)
    raw = raw_outputs(learn, learn.dls.valid)
    torch.testing.assert_close(p, raw, atol=1e-5, rtol=1e-5)
    fastinterp.register_activation(my_ce, 'softmax')
    p, t, d = learn.get_preds(with_decoded=True)
    torch.testing.assert_close(p, torch.softmax(raw, 1), atol=1e-6, rtol=1e-5)

def test_no_loss_function_is_a_clear_error(digits_path):
    learn = digits_learner(digits_path)
    dl = learn.dls.test_dl(sorted((digits_path/'valid'/'1').glob('*.png')))
    learn.loss_func = None
    with pytest.raises(TypeError, match='no loss function'): learn.get_preds(dl=dl)

def identity_learner(z, y, loss_func):
    "A learner whose model hands back its input: its outputs are exactly `z`"
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner
    items = list(zip(z, y))
    return Learner(DataLoaders(DataLoader(items, bs=4), DataLoader(items, bs=4)), _Identity(), loss_func=loss_func)

class _Identity(nn.Module):
    "Hands back its input, infinities included (a matrix product would turn inf * 0 into NaN)"
    def __init__(self): super().__init__(); self.unused = nn.Parameter(torch.zeros(1))
    def forward(self, x): return x

def test_nan_and_inf_outputs_are_said_and_never_decoded_as_a_class():
    inf, nan = float('inf'), float('nan')
    z = torch.tensor([[0., 1., 2.], [inf, 0., 0.], [nan, 0., 1.], [-inf, 0., 0.], [inf, inf, 0.], [1., 0., 0.]])
    learn = identity_learner(z, torch.tensor([0, 0, 0, 1, 0, 0]), nn.CrossEntropyLoss())
    with pytest.warns(UserWarning, match=r'1 of 6 rows hold NaN.*decoded class is -1.*3 of 6 rows hold an infinite'):
        with learn.no_bar(): p, _, dec = learn.get_preds(with_decoded=True)
    torch.testing.assert_close(p[[0, 5]], torch.softmax(z[[0, 5]], 1))
    assert p[1].tolist() == [1., 0., 0.] and p[4].tolist() == [0.5, 0.5, 0.] and p[3].tolist() == [0., 0.5, 0.5]
    assert torch.isnan(p[2]).all() and dec.tolist() == [2, 0, -1, 1, 0, 0]
    with pytest.warns(UserWarning) as w:  # no classes asked for: none are spoken of
        with learn.no_bar(): p2, _ = learn.get_preds()
    assert 'decoded' not in str(w[0].message) and torch.equal(p2.nan_to_num(-1), p.nan_to_num(-1))
    with pytest.raises(ValueError, match='holds NaN, so it predicts no class'), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        learn.predict(z[2])
    assert learn.predict(z[1])[1] == 0

@pytest.mark.parametrize('scale', [1., 1e38])  # 1e38: finite logits whose sum overflows float32
def test_finite_outputs_do_not_warn(scale):
    z = torch.randn(8, 3, generator=torch.Generator().manual_seed(0)) * scale
    learn = identity_learner(z, torch.zeros(8, dtype=torch.long), nn.CrossEntropyLoss())
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        with learn.no_bar(): p, _, dec = learn.get_preds(with_decoded=True)
    assert torch.isfinite(p).all() and torch.equal(dec, z.argmax(1))

def test_nll_loss_over_a_softmax_model_gives_its_probabilities(digits_path):
    "exp() of probabilities would leave [0, 1]: the model's own softmax outputs are the probabilities, and it is said"
    learn = digits_learner(digits_path, loss_func=nn.NLLLoss(), final=nn.Softmax(1))
    with pytest.warns(UserWarning, match=r'outputs themselves as the probabilities'): p, _ = learn.get_preds()
    torch.testing.assert_close(p, raw_outputs(learn, learn.dls.valid))
    assert float(p.max()) <= 1 and float(p.min()) >= 0

def test_an_activation_that_leaves_0_1_is_said():
    class ExpLoss(nn.Module):
        def forward(self, out, targ): return F.nll_loss(out, targ)
    fastinterp.register_activation(ExpLoss, 'exp', kind='multiclass')
    z = torch.randn(8, 3, generator=torch.Generator().manual_seed(0)) * 3  # logits, not log-probabilities
    learn = identity_learner(z, torch.zeros(8, dtype=torch.long), ExpLoss())
    with pytest.warns(UserWarning, match=r'outside \[0, 1\]: they are NOT probabilities'):
        with learn.no_bar(): learn.get_preds()

def test_the_range_check_sees_past_nan():
    "NaN among the probabilities of `activate` must not hide values outside [0, 1] (NaN fails every comparison)"
    from fastinterp.preds import _check_range
    from fastinterp.activations import activation_for
    model, act = nn.Linear(2, 2), activation_for(nn.CrossEntropyLoss())
    with pytest.warns(UserWarning, match=r'from 0\.1 to 3, outside \[0, 1\]'):
        _check_range(model, act, torch.tensor([[float('nan'), 3.], [0.1, 0.9]]))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        _check_range(nn.Linear(2, 2), act, torch.tensor([[float('nan'), 0.4], [0.1, 0.9]]))  # in range: no word

@pytest.mark.parametrize('use', ['memory', 'streaming', 'tta', 'mc_dropout'])
def test_outputs_that_are_probabilities_are_seen_on_the_first_batch(digits_arrays, monkeypatch, use):
    "Looked at once per call (it was once per batch: 6 ms a batch of masks), and kept for every batch after it"
    X, y = digits_arrays
    learn = plain_learner(X, y, nn.NLLLoss(), 10, final=nn.Softmax(1))  # probabilities, where log-probabilities belong
    if use == 'mc_dropout': learn.model = nn.Sequential(nn.Dropout(0.2), *learn.model)
    dl = learn.dls.valid
    assert len(dl) == 3
    out = raw_outputs(learn, dl)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the warning that the outputs already look like a softmax: tested above
        looks = count_looks(monkeypatch)
        if use in ('memory', 'streaming'):
            kw = dict(streaming=True, k=360) if use == 'streaming' else {}
            it = fastinterp.ClassificationInterpretation.from_learner(learn, progress=False, **kw)
            kept = None if use == 'memory' else it.stats.compute()['top']['loss']
            p, ref = (it.probs, out) if use == 'memory' else (kept['probs'], out[kept['idx']])
        elif use == 'tta':
            p, _ = learn.tta(n=2, batch_tfms=lambda b: b, progress=False)  # no change: the passes equal the outputs
            ref = out
        else:
            p, ref = mc_dropout(learn, n=3, seed=0, progress=False).probs, None
    assert len(looks) == 1, looks
    # exp() of the outputs on any batch would not sum to 1: each batch kept them as the probabilities
    torch.testing.assert_close(p.sum(1), torch.ones(len(p)), atol=1e-5, rtol=0)
    if ref is not None: torch.testing.assert_close(p, ref, atol=1e-6, rtol=1e-5)

# --- inference passes keep what the process held before them out of the garbage collector's sweeps (gc.freeze)
class _SeesFreeze(Callback):
    "Records, at each validation batch of every pass it sees, how many objects are frozen out of the collector's sweeps"
    def __init__(self): self.frozen = []
    def after_batch(self):
        if not self.training: self.frozen.append(gc.get_freeze_count())

def _freeze_of(learn, run):
    "What `_SeesFreeze` sees at each validation batch of `run()` on `learn`, and the freeze count after it"
    cb = _SeesFreeze()
    with learn.added_cbs([cb]): run()
    return cb.frozen, gc.get_freeze_count()

@pytest.fixture(scope='module')
def digits_mlp(digits_arrays):
    X, y = digits_arrays
    learn = plain_learner(X, y, nn.CrossEntropyLoss(), 10)
    learn.model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10))  # for MC dropout
    return fit_quietly(learn)

def test_every_inference_pass_runs_with_the_objects_before_it_frozen(digits_mlp):
    from fastinterp import ClassificationInterpretation
    learn, noise = digits_mlp, lambda b: (b[0] + 0.05 * torch.randn_like(b[0]), *b[1:])
    assert gc.get_freeze_count() == 0
    runs = {'get_preds': lambda: learn.get_preds(),
            'in memory': lambda: ClassificationInterpretation.from_learner(learn, progress=False),
            'streamed': lambda: ClassificationInterpretation.from_learner(learn, streaming=True, progress=False),
            'tta': lambda: learn.tta(n=2, batch_tfms=noise, progress=False),
            'calibrate': lambda: learn.calibrate(quiet=True),
            'mc_dropout': lambda: mc_dropout(learn, n=2, progress=False)}
    for what, run in runs.items():
        frozen, after = _freeze_of(learn, run)
        assert frozen and all(f > 1000 for f in frozen), what  # torch's and fastai's objects, at least
        assert after == 0, what  # and given back to the collector after the pass
    learn.temperature = None

def test_a_freeze_made_outside_is_left_as_it_is(digits_mlp):
    from fastinterp.passes import gc_frozen
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        frozen, after = _freeze_of(digits_mlp, digits_mlp.get_preds)
        # nothing more frozen (objects only leave the frozen ones as they are freed), nothing thawed
        assert frozen and max(frozen) <= before and 0.9 * before < after <= before
    finally: gc.unfreeze()
    gc.disable()  # the collector off: it sweeps nothing, so nothing is frozen
    try:
        with gc_frozen(): assert gc.get_freeze_count() == 0
    finally: gc.enable()

def test_a_pass_that_fails_gives_the_objects_back_and_cycles_made_in_a_pass_are_collected(digits_mlp):
    import weakref
    class Node: pass
    seen = []
    class Fails(Callback):
        def after_batch(self):
            a, b = Node(), Node(); a.b, b.a = b, a  # a cycle, garbage once this returns
            seen.append(weakref.ref(a))
            if len(seen) == 2:
                gc.collect()  # a full collection during the pass: the first batch's cycle is gone
                assert seen[0]() is None and gc.get_freeze_count() > 0
                raise RuntimeError('a callback fails')
    with pytest.raises(RuntimeError, match='a callback fails'): digits_mlp.get_preds(cbs=[Fails()])
    assert gc.get_freeze_count() == 0
