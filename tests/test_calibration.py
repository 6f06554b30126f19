"Calibration: metrics against torchmetrics, sklearn and hand-computed cases; temperature scaling; MC dropout against passes stacked by hand"
import math, warnings
import numpy as np, pytest, torch
import torch.nn as nn
import torch.nn.functional as F
import sklearn.metrics as skm
from scipy.optimize import minimize_scalar
from scipy.stats import entropy as sp_entropy
import matplotlib.pyplot as plt
from torchmetrics.functional.classification import multiclass_calibration_error, binary_calibration_error
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader as FaDataLoader
from fastai.learner import Learner, load_learner
from fastai.torch_core import set_seed

import fastinterp
from fastinterp.calibration import (CalibrationBins, calibration_bins, label_calibration_bins, ece_from_bins, mce_from_bins,
                                    ece, mce, label_ece, brier, nll, calibration_metrics, fit_temperature)
from fastinterp.show import reliability_diagram, reliability_diagram_from_bins
from fastinterp.uncertainty import mc_dropout
from fastinterp.interpret import ClassificationInterpretation
from conftest import raw_outputs

# --- data and learners
def random_probs(n, C, seed=0):
    "Float32 softmax probabilities and targets right ~70% of the time, with rows whose confidence sits exactly on bin edges"
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(n, C, generator=g) * 3, 1)
    t = torch.where(torch.rand(n, generator=g) < 0.7, p.argmax(1), torch.randint(0, C, (n,), generator=g))
    for i, e in enumerate((1.0, 0.75, 0.5, 0.25 if C >= 4 else 0.5)):  # 1.0: torchmetrics' extra bin; the others: edges
        p[i] = 0; p[i, i % C] = e
        rest = (1 - e) / (C - 1)
        p[i, [c for c in range(C) if c != i % C]] = rest
    return p, t

def synthetic_logits(T_true, n=20_000, C=10, seed=0):
    "Logits and labels drawn from softmax(logits / T_true): the logits are over-confident when T_true > 1"
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, C, generator=g) * 3
    return z, torch.multinomial(torch.softmax(z / T_true, 1), 1, generator=g)[:, 0]

def scipy_temperature(nll_of_T):
    "Minimizer of a NLL over T in [0.01, 100], by scipy's bounded scalar search on log T"
    r = minimize_scalar(lambda lt: nll_of_T(math.exp(lt)), bounds=(math.log(1e-2), math.log(1e2)), method='bounded',
                        options={'xatol': 1e-10})
    return math.exp(r.x)

def digits_tensors(seed=0):
    from sklearn.datasets import load_digits
    d = load_digits()
    perm = torch.randperm(len(d.target), generator=torch.Generator().manual_seed(seed))
    return torch.tensor(d.data / 16, dtype=torch.float32)[perm], torch.tensor(d.target)[perm]

def mlp_learner(X, y, loss_func, n_out, n_train=300, dropout=0.2, final=None, valid_bs=512):
    "A plain `Learner` on tensors; a small training split and no weight decay make it over-fit, hence over-confident"
    set_seed(0)
    dls = DataLoaders(FaDataLoader(list(zip(X[:n_train], y[:n_train])), bs=32, shuffle=True),
                      FaDataLoader(list(zip(X[n_train:], y[n_train:])), bs=valid_bs))
    layers = [nn.Linear(X.shape[1], 128), nn.ReLU(), *([nn.Dropout(dropout)] if dropout else []), nn.Linear(128, n_out)]
    return Learner(dls, nn.Sequential(*layers, *([final] if final else [])), loss_func=loss_func, wd=0.)

def fit(learn, epochs, lr=1e-2):
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs, lr)
    return learn

def valid_targets(learn): return torch.cat([b[1] for b in learn.dls.valid]).as_subclass(torch.Tensor)

def multilabel_targets(y):
    "Three labels of a digit: even, above 4, drawn with a closed loop (0, 6, 8, 9)"
    return torch.stack([y % 2 == 0, y > 4, (y == 0) | (y == 6) | (y == 8) | (y == 9)], 1).float()

@pytest.fixture(scope='module')
def overfit():
    "An MLP on 300 digits, 100 epochs without weight decay: over-confident on the 1,497 others"
    X, y = digits_tensors()
    return fit(mlp_learner(X, y, nn.CrossEntropyLoss(), 10), 100)

@pytest.fixture(scope='module')
def multilabel():
    X, y = digits_tensors()
    return fit(mlp_learner(X, multilabel_targets(y), nn.BCEWithLogitsLoss(), 3), 60)

@pytest.fixture
def vision(digits_vision):
    "The shared digits CNN (BatchNorm and dropout), its temperature removed afterwards"
    yield digits_vision
    vars(digits_vision).pop('temperature', None)

# --- metrics
@pytest.mark.parametrize('C', [2, 3, 10])
@pytest.mark.parametrize('n_bins', [1, 4, 15, 100])
def test_ece_mce_match_torchmetrics(C, n_bins):
    p, t = random_probs(3000, C)
    assert ece(p, t, n_bins) == pytest.approx(multiclass_calibration_error(p, t, C, n_bins, norm='l1').item(), abs=1e-6)
    assert mce(p, t, n_bins) == pytest.approx(multiclass_calibration_error(p, t, C, n_bins, norm='max').item(), abs=1e-6)

@pytest.mark.parametrize('n_bins', [4, 15])
def test_multilabel_ece_matches_torchmetrics_binary(n_bins):
    g = torch.Generator().manual_seed(1)
    p = torch.rand(2000, 4, generator=g)
    p[:4, 0] = torch.tensor([0., 0.25, 0.5, 1.])  # bin edges, and exactly 1
    y = (torch.rand(2000, 4, generator=g) < p ** 2).float()
    assert ece(p, y, n_bins, multilabel=True) == pytest.approx(binary_calibration_error(p, y, n_bins).item(), abs=1e-6)
    # torchmetrics sums in float32 (here 2,000 items a bin), fastinterp in float64
    assert mce(p, y, n_bins, multilabel=True) == pytest.approx(binary_calibration_error(p, y, n_bins, norm='max').item(), abs=1e-5)
    want = [binary_calibration_error(p[:, l].contiguous(), y[:, l].contiguous(), n_bins).item() for l in range(4)]
    np.testing.assert_allclose(label_ece(p, y, n_bins).numpy(), want, atol=1e-6)

def test_hand_computed_ece():
    # torchmetrics' documented example, by hand: confidences .55 .55 .60 .90, right: no no yes yes. 3 bins:
    # [1/3, 2/3) holds .55 .55 .60 -> accuracy 1/3, confidence 1.7/3, gap 0.7/3; [2/3, 1) holds .90 -> gap .1
    p = torch.tensor([[0.25, 0.20, 0.55], [0.55, 0.05, 0.40], [0.10, 0.30, 0.60], [0.90, 0.05, 0.05]])
    t = torch.tensor([0, 1, 2, 0])
    assert ece(p, t, 3) == pytest.approx(3/4 * 0.7/3 + 1/4 * 0.1, abs=1e-7)
    assert mce(p, t, 3) == pytest.approx(0.7/3, abs=1e-7)
    b = calibration_bins(p, t, 3)
    assert b.count.tolist() == [0, 3, 1, 0] and b.correct.tolist() == [0, 1, 1, 0]

def test_bin_boundaries_as_torchmetrics():
    # [0.5, 1) is closed on the left: 0.5 goes up. A confidence of exactly 1 has a bin of its own, so a wrong
    # certain prediction and a right 0.6 are not averaged together: (|0 - 1| + |1 - 0.6|) / 2 = 0.7, not |1 - 1.6| / 2
    p, t = torch.tensor([[1., 0.], [0.6, 0.4]]), torch.tensor([1, 0])
    assert ece(p, t, 2) == pytest.approx(0.7, abs=1e-7)
    assert calibration_bins(p, t, 2).count.tolist() == [0, 1, 1]
    assert calibration_bins(torch.tensor([[0.5, 0.5]]), torch.tensor([0]), 2).count.tolist() == [0, 1, 0]
    assert ece(p, t, 2) == pytest.approx(multiclass_calibration_error(p, t, 2, 2).item(), abs=1e-7)

def test_bins_add_up_across_batches():
    p, t = random_probs(5000, 10)
    whole = calibration_bins(p, t)
    parts = [calibration_bins(p[i:i+333], t[i:i+333]) for i in range(0, 5000, 333)]
    summed = CalibrationBins(*(torch.stack(x).sum(0) for x in zip(*parts)))
    assert torch.equal(summed.count, whole.count) and torch.equal(summed.correct, whole.correct)
    torch.testing.assert_close(summed.confidence, whole.confidence, rtol=0, atol=1e-12)
    assert abs(float(ece_from_bins(summed)) - float(ece_from_bins(whole))) < 1e-15
    assert whole.count.dtype == torch.int64 and whole.confidence.dtype == torch.float64 and len(whole.count) == 16
    L = label_calibration_bins(torch.rand(50, 3), torch.randint(0, 2, (50, 3)), 5)
    assert L.count.shape == (3, 6) and ece_from_bins(L).shape == (3,) and mce_from_bins(L).shape == (3,)

@pytest.mark.parametrize('C', [2, 10])
def test_brier_and_nll_match_sklearn_and_torch(C):
    g = torch.Generator().manual_seed(2)
    z = torch.randn(1000, C, generator=g, dtype=torch.float64) * 2
    t = torch.randint(0, C, (1000,), generator=g)
    p = torch.softmax(z, 1)
    assert brier(p, t) == pytest.approx(skm.brier_score_loss(t.numpy(), p.numpy(), labels=list(range(C)), scale_by_half=False), rel=1e-9)
    assert nll(p, t) == pytest.approx(skm.log_loss(t.numpy(), p.numpy(), labels=list(range(C))), rel=1e-5)
    assert nll(p, t) == pytest.approx(F.cross_entropy(z, t).item(), rel=1e-5)
    y = (torch.rand(1000, C, generator=g) < 0.4).double()
    assert brier(torch.sigmoid(z), y, multilabel=True) == pytest.approx(
        np.mean([skm.brier_score_loss(y[:, l].numpy(), torch.sigmoid(z[:, l]).numpy()) for l in range(C)]), rel=1e-9)
    assert nll(torch.sigmoid(z), y, multilabel=True) == pytest.approx(F.binary_cross_entropy_with_logits(z, y).item(), rel=1e-5)

def test_metrics_dict():
    p, t = random_probs(500, 5)
    m = calibration_metrics(p, t, 10)
    assert set(m) == {'ece', 'mce', 'brier', 'nll', 'accuracy'}
    assert m['accuracy'] == pytest.approx(float((p.argmax(1) == t).float().mean()))
    assert m['ece'] == pytest.approx(multiclass_calibration_error(p, t, 5, 10).item(), abs=1e-6)
    y = (torch.rand(500, 3) < 0.5).float()
    q = torch.rand(500, 3)
    m = calibration_metrics(q, y, multilabel=True, thresh=0.3, labels=['a', 'b', 'c'])
    assert m['accuracy'] == pytest.approx(float(((q > 0.3) == y.bool()).float().mean()))
    assert list(m['label_ece'].index) == ['a', 'b', 'c']

@pytest.mark.parametrize('probs,targs,kw,match', [
    (torch.randn(10, 3) * 5, torch.zeros(10, dtype=torch.long), {}, 'raw outputs'),
    (torch.full((4, 2), float('nan')), torch.zeros(4, dtype=torch.long), {}, 'NaN'),
    (torch.full((4, 2), 0.5), torch.tensor([0, 1, -100, 1]), {}, 'ignore_index'),
    (torch.full((4, 2), 0.5), torch.zeros(4, dtype=torch.long), {'n_bins': 0}, 'n_bins'),
    (torch.full((4, 2), 0.5), torch.zeros(3, 2), {'multilabel': True}, 'do not match'),
    (torch.full((4, 2, 2), 0.5), torch.zeros(4, dtype=torch.long), {}, r'shape \(N, C\)'),
])
def test_metric_errors(probs, targs, kw, match):
    with pytest.raises(ValueError, match=match): ece(probs, targs, **kw)

def test_reliability_diagram(tmp_path):
    z, y = synthetic_logits(2.5, n=4000)
    p = torch.softmax(z, 1)
    p[0] = torch.nn.functional.one_hot(y[0], 10)  # a confidence of exactly 1: torchmetrics' extra bin, drawn in the last one
    fig = reliability_diagram(p, y, title='over-confident')
    ax, hx = fig.axes
    assert ax.get_title().startswith('over-confident\nECE ') and f"ECE {100 * ece(p, y):.2f}%" in ax.get_title()
    assert hx.get_yscale() == 'log'
    # the bars, binned by hand: each non-empty bin's accuracy above, its share of the items below
    conf, right = p.max(1).values.numpy(), (p.argmax(1) == y).numpy()
    idx = np.minimum(np.digitize(conf, np.linspace(0, 1, 16, dtype=np.float32)) - 1, 14)
    full = [i for i in range(15) if (idx == i).any()]
    np.testing.assert_allclose([b.get_height() for b in ax.containers[0]], [right[idx == i].mean() for i in full], atol=1e-6)
    np.testing.assert_allclose([b.get_height() for b in hx.containers[0]], [(idx == i).mean() for i in full], atol=1e-9)
    fig.savefig(tmp_path/'reliability.png')
    r = fig.canvas.get_renderer()
    for a in (ax, hx):  # each legend beside its panel, over no bar, and inside the figure saved without bbox_inches='tight'
        box = a.get_legend().get_window_extent(r)
        assert not box.overlaps(a.get_window_extent(r)) and fig.bbox.contains(box.x1, box.y0)
    plt.close(fig)

def test_reliability_diagram_from_bins():
    "Drawn from per-bin sums alone: one label's row of label_calibration_bins is that label's diagram"
    g = torch.Generator().manual_seed(6)
    q = torch.rand(600, 3, generator=g)
    y = (torch.rand(600, 3, generator=g) < q).float()
    bins = label_calibration_bins(q, y, 10)
    fig = reliability_diagram_from_bins(CalibrationBins(*(x[1] for x in bins)), multilabel=True, title='label 1')
    ax, (p1, y1) = fig.axes[0], (x[:, 1].contiguous() for x in (q, y))
    ece_, mce_ = (100 * binary_calibration_error(p1, y1, 10, norm=norm).item() for norm in ('l1', 'max'))
    assert ax.get_title().startswith(f"label 1\nECE {ece_:.2f}% · 10 bins\nMCE {mce_:.2f}%: largest gap")
    idx = np.minimum(np.digitize(p1.numpy(), np.linspace(0, 1, 11, dtype=np.float32)) - 1, 9)
    full = [i for i in range(10) if (idx == i).any()]
    np.testing.assert_allclose([b.get_height() for b in ax.containers[0]], [y1[idx == i].mean() for i in full], atol=1e-6)
    plt.close(fig)
    with pytest.raises(ValueError, match=r'shape \(n_bins\+1,\), got shape \(3, 11\).*x\[label\]'): reliability_diagram_from_bins(bins)
    empty = CalibrationBins(torch.zeros(16, dtype=torch.long), torch.zeros(16, dtype=torch.float64), torch.zeros(16, dtype=torch.float64))
    with pytest.raises(ValueError, match='at least one item'): reliability_diagram_from_bins(empty)

# --- temperature scaling
@pytest.mark.parametrize('T_true', [0.5, 2.5])
def test_fit_temperature_recovers_the_true_one(T_true):
    z, y = synthetic_logits(T_true)
    T = fit_temperature(z, y)
    assert abs(T - T_true) / T_true < 0.05
    assert T == pytest.approx(scipy_temperature(lambda T: F.cross_entropy(z.double() / T, y).item()), rel=1e-4)
    before, after = torch.softmax(z, 1), torch.softmax(z / T, 1)
    assert ece(after, y) < ece(before, y) and nll(after, y) < nll(before, y)
    assert torch.equal(after.argmax(1), before.argmax(1))
    assert fit_temperature(F.log_softmax(z, 1), y) == pytest.approx(T, rel=1e-6)  # NLLLoss models output log-probabilities

def test_fit_temperature_per_label():
    g = torch.Generator().manual_seed(3)
    z, T_true = torch.randn(20_000, 3, generator=g) * 3, torch.tensor([0.7, 1.5, 3.0])
    y = (torch.rand(20_000, 3, generator=g) < torch.sigmoid(z / T_true)).float()
    T = fit_temperature(z, y, multilabel=True)
    assert ((T - T_true).abs() / T_true < 0.05).all()
    for l in range(3):
        ref = scipy_temperature(lambda T: F.binary_cross_entropy_with_logits(z[:, l].double() / T, y[:, l].double()).item())
        assert float(T[l]) == pytest.approx(ref, rel=1e-4)

def test_fit_temperature_bounds_warn():
    z = torch.tensor([[5., 0.], [0., 5.]])
    with pytest.warns(UserWarning, match='predicted right'): assert fit_temperature(z, torch.tensor([0, 1])) == pytest.approx(0.01)
    with pytest.warns(UserWarning, match='no better than chance'): assert fit_temperature(z, torch.tensor([1, 0])) == pytest.approx(100)

def test_calibrate_overconfident_learner(overfit, capsys):
    learn = overfit
    raw, t = raw_outputs(learn, learn.dls.valid), valid_targets(learn)
    try:
        with learn.no_bar(): held = learn.calibrate()
        out = capsys.readouterr().out
        assert 'each half tempered by the T fitted on the other half' in out and held.attrs['judged'] == 'held out'
        # by default 'after' is judged on items its T never saw: each half of a seeded split by the other half's T
        order = torch.randperm(len(raw), generator=torch.Generator().manual_seed(0))
        halves, after = (order[:len(raw) // 2], order[len(raw) // 2:]), torch.empty_like(raw)
        for fit, judge in (halves, halves[::-1]):
            T_half = scipy_temperature(lambda T: F.cross_entropy(raw[fit].double() / T, t[fit]).item())
            after[judge] = torch.softmax(raw[judge] / T_half, 1)
        assert held.loc['after', 'ece'] == pytest.approx(multiclass_calibration_error(after, t, 10, 15).item(), abs=1e-4)
        assert held.loc['after', 'nll'] == pytest.approx(F.nll_loss(after.log(), t).item(), rel=1e-3)
        assert held.loc['before', 'ece'] == pytest.approx(multiclass_calibration_error(torch.softmax(raw, 1), t, 10, 15).item(), abs=1e-5)
        with learn.no_bar(): res = learn.calibrate(held_out=False)
        T = learn.temperature
        assert T == pytest.approx(scipy_temperature(lambda T: F.cross_entropy(raw.double() / T, t).item()), rel=1e-4)
        assert T > 1.2  # over-confident: the best temperature softens the softmax
        assert res.loc['after', 'ece'] < res.loc['before', 'ece'] and res.loc['after', 'nll'] < res.loc['before', 'nll']
        assert res.loc['after', 'accuracy'] == res.loc['before', 'accuracy']
        for row, p in (('before', torch.softmax(raw, 1)), ('after', torch.softmax(raw / T, 1))):
            assert res.loc[row, 'ece'] == pytest.approx(multiclass_calibration_error(p, t, 10, 15).item(), abs=1e-5)  # float32 sums there
            assert res.loc[row, 'nll'] == pytest.approx(F.nll_loss(p.log(), t).item(), rel=1e-4)
        out = capsys.readouterr().out
        assert f'Temperature T = {T:.4g}, fitted on 1,497 items of the validation set' in out and 'learn.temperature = None' in out
        assert 'IN-SAMPLE (held_out=False)' in out and res.attrs['judged'] == 'in-sample'
        with learn.no_bar(): p, targs, dec = learn.get_preds(with_decoded=True)
        torch.testing.assert_close(p, torch.softmax(raw / T, 1))
        assert torch.equal(dec, raw.argmax(1))
        _, c, probs = learn.predict(learn.dls.valid.dataset[0][0])
        torch.testing.assert_close(probs, torch.softmax(raw[0] / T, 0))
        with learn.no_bar(): learn.calibrate(quiet=True)
        assert capsys.readouterr().out == ''
    finally: learn.temperature = None
    with learn.no_bar(): torch.testing.assert_close(learn.get_preds()[0], torch.softmax(raw, 1))

def test_calibrate_nll_loss():
    "A model ending in LogSoftmax, trained with NLLLoss: softmax(log p / T) is the calibrated probability"
    X, y = digits_tensors()
    learn = fit(mlp_learner(X, y, nn.NLLLoss(), 10, final=nn.LogSoftmax(1)), 40)
    raw, t = raw_outputs(learn, learn.dls.valid), valid_targets(learn)
    with learn.no_bar(): learn.calibrate(quiet=True); p = learn.get_preds()[0]
    T = learn.temperature
    assert T == pytest.approx(scipy_temperature(lambda T: F.cross_entropy(raw.double() / T, t).item()), rel=1e-4)
    torch.testing.assert_close(p, torch.softmax(raw / T, 1))
    torch.testing.assert_close(p.sum(1), torch.ones(len(p)))

def test_calibrate_one_output_sigmoid_with_two_class_names():
    "A binary model with one sigmoid output, its data naming both classes: one temperature for its one label"
    X, y = digits_tensors()
    learn = fit(mlp_learner(X, (y % 2).float()[:, None], nn.BCEWithLogitsLoss(), 1), 30)
    learn.dls.vocab = ['even', 'odd']
    raw, t = raw_outputs(learn, learn.dls.valid), valid_targets(learn)
    with learn.no_bar(): res = learn.calibrate(quiet=True)
    T = float(torch.as_tensor(learn.temperature).view(-1)[0])
    assert T == pytest.approx(scipy_temperature(lambda T: F.binary_cross_entropy_with_logits(raw.double() / T, t.double()).item()), rel=1e-4)
    assert res.loc['before', 'accuracy'] == res.loc['after', 'accuracy']

def test_calibrate_multilabel_one_temperature_per_label(multilabel):
    learn = multilabel
    raw, y = raw_outputs(learn, learn.dls.valid), valid_targets(learn)
    try:
        with learn.no_bar(): res = learn.calibrate(quiet=True); p, _, dec = learn.get_preds(with_decoded=True)
        T = learn.temperature
        assert T.shape == (3,)
        for l in range(3):
            ref = scipy_temperature(lambda T: F.binary_cross_entropy_with_logits(raw[:, l].double() / T, y[:, l].double()).item())
            assert float(T[l]) == pytest.approx(ref, rel=1e-4)
        torch.testing.assert_close(p, torch.sigmoid(raw / T))
        assert torch.equal(dec, raw > 0)  # at threshold 0.5 a temperature moves no decision
        assert res.loc['after', 'nll'] <= res.loc['before', 'nll'] and res.loc['after', 'accuracy'] == res.loc['before', 'accuracy']
    finally: learn.temperature = None

def test_temperature_reaches_tta_interpretation_and_survives_export(vision, tmp_path):
    learn = vision
    raw = raw_outputs(learn, learn.dls.valid)
    with learn.no_bar(): learn.calibrate(quiet=True)
    T = learn.temperature
    want = torch.softmax(raw / T, 1)
    with learn.no_bar(): (_, plain), _ = learn.tta(n=1, beta=None)
    torch.testing.assert_close(plain, want)
    torch.testing.assert_close(ClassificationInterpretation.from_learner(learn).probs, want)
    files = learn.dls.valid.items[:12]
    with learn.no_bar(): ref = learn.get_preds(dl=learn.dls.test_dl(files))[0]
    learn.export(tmp_path/'calibrated.pkl')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # load_learner's warning about pickle
        loaded = load_learner(tmp_path/'calibrated.pkl')
    assert loaded.temperature == T
    with loaded.no_bar():
        torch.testing.assert_close(loaded.get_preds(dl=loaded.dls.test_dl(files))[0], ref)
        torch.testing.assert_close(loaded.predict(files[0])[2], ref[0])

class _TwiceSoftmaxLoss(nn.CrossEntropyLoss): pass

@pytest.mark.parametrize('case,err,match', [
    ('regression', ValueError, 'regression loss'),
    ('bce', ValueError, 'outputs probabilities'),
    ('unknown', ValueError, 'does not know the final activation'),
    ('not_softmax', ValueError, 'is not a softmax'),
])
def test_calibrate_refuses(case, err, match):
    X, y = digits_tensors()
    if case == 'regression': learn = mlp_learner(X, y.float()[:, None], nn.MSELoss(), 1)
    elif case == 'bce': learn = mlp_learner(X, multilabel_targets(y), nn.BCELoss(), 3, final=nn.Sigmoid())
    elif case == 'unknown': learn = mlp_learner(X, y, lambda out, targ: F.cross_entropy(out, targ), 10)
    else:
        fastinterp.register_activation(_TwiceSoftmaxLoss, lambda x: torch.softmax(2 * x, 1), kind='multiclass')
        learn = mlp_learner(X, y, _TwiceSoftmaxLoss(), 10)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the unknown loss's warning
        with pytest.raises(err, match=match), learn.no_bar(): learn.calibrate(quiet=True)
    assert 'temperature' not in vars(learn)

def test_calibrate_needs_labels(vision):
    with pytest.raises(ValueError, match='unlabelled'), vision.no_bar():
        vision.calibrate(dl=vision.dls.test_dl(vision.dls.valid.items[:8]), quiet=True)

def test_unpatch_removes_calibrate():
    try:
        fastinterp.unpatch()
        assert not hasattr(Learner, 'calibrate')
    finally: fastinterp.patch()
    assert hasattr(Learner, 'calibrate')

# --- MC dropout
def passes_by_hand(learn, n, seed):
    "Raw outputs of `n` forward passes per batch, stacked by hand with only the dropout layers on: (N, n, C), and the targets"
    model = learn.model.eval()
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    torch.manual_seed(seed)
    for m in drops: m.train()
    outs, targs = [], []
    try:
        with torch.no_grad():
            for xb, yb in learn.dls.valid:
                outs.append(torch.stack([model(xb).as_subclass(torch.Tensor) for _ in range(n)], 1))
                targs.append(yb.as_subclass(torch.Tensor))
    finally: model.eval()
    return torch.cat(outs).double(), torch.cat(targs)

def test_mc_dropout_matches_passes_stacked_by_hand(vision):
    learn, n = vision, 4
    bn = [m for m in learn.model.modules() if isinstance(m, nn.BatchNorm2d)]
    stats = [m.running_mean.clone() for m in bn]
    rng = torch.get_rng_state()
    with learn.no_bar(): r = mc_dropout(learn, n, seed=0)
    assert torch.equal(torch.get_rng_state(), rng)  # the seed does not touch the global generator
    assert not any(m.training for m in learn.model.modules()) and all(torch.equal(m.running_mean, s) for m, s in zip(bn, stats))
    out, t = passes_by_hand(learn, n, 0)
    P = torch.softmax(out, 2).numpy()
    N, C = len(P), P.shape[2]
    mean = P.mean(1)
    np.testing.assert_allclose(r.probs.numpy(), mean, atol=1e-6)
    assert (P.std(1) > 1e-3).any()  # the passes differ: dropout was on
    mi = (sp_entropy(mean, axis=1) - sp_entropy(P, axis=2).mean(1)) / math.log(C)
    np.testing.assert_allclose(r.mutual_info.numpy(), mi, atol=1e-5)
    np.testing.assert_allclose(r.variance.numpy(), P[np.arange(N), :, mean.argmax(1)].var(1), atol=1e-6)
    assert torch.equal(r.targs, valid_targets(learn))

def test_mc_dropout_multilabel_by_hand(multilabel):
    n = 5
    with multilabel.no_bar(): r = mc_dropout(multilabel, n, seed=1)
    P = torch.sigmoid(passes_by_hand(multilabel, n, 1)[0]).numpy()
    mean = P.mean(1)
    bern = lambda p: sp_entropy(np.stack([p, 1 - p], -1), axis=-1)  # entropy of each label's Bernoulli
    mi = (bern(mean) - bern(P).mean(1)) / math.log(2)
    np.testing.assert_allclose(r.probs.numpy(), mean, atol=1e-6)
    np.testing.assert_allclose(r.mutual_info.numpy(), mi.max(1), atol=1e-5)
    np.testing.assert_allclose(r.variance.numpy(), P.var(1).max(1), atol=1e-6)

def test_mc_dropout_runs_n_passes_per_batch(overfit):
    calls = []
    h = overfit.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        with overfit.no_bar(): mc_dropout(overfit, 7, seed=0)
    finally: h.remove()
    assert len(calls) == 7 * len(overfit.dls.valid)

@pytest.mark.parametrize('n,dropout,match', [(1, 0.2, '2 or more passes'), (5, 0, 'has none')])
def test_mc_dropout_refuses(n, dropout, match):
    X, y = digits_tensors()
    learn = mlp_learner(X, y, nn.CrossEntropyLoss(), 10, dropout=dropout)
    with pytest.raises(ValueError, match=match): mc_dropout(learn, n)

def test_mc_dropout_p0_layers_refused():
    X, y = digits_tensors()
    learn = mlp_learner(X, y, nn.CrossEntropyLoss(), 10, dropout=0.2)
    learn.model[2].p = 0.
    with pytest.raises(ValueError, match='only p=0'): mc_dropout(learn, 3)

# --- interpretation
def test_interpretation_calibration_views(vision, tmp_path):
    it = ClassificationInterpretation.from_learner(vision)
    raw, t = raw_outputs(vision, vision.dls.valid), valid_targets(vision)
    p = torch.softmax(raw, 1)
    m = it.calibration()
    assert m['ece'] == pytest.approx(multiclass_calibration_error(p, t, 10, 15).item(), abs=1e-6)
    assert m['mce'] == pytest.approx(multiclass_calibration_error(p, t, 10, 15, norm='max').item(), abs=1e-6)
    assert m['nll'] == pytest.approx(F.cross_entropy(raw, t).item(), rel=1e-4)
    assert m['brier'] == pytest.approx(skm.brier_score_loss(t.numpy(), p.numpy(), labels=list(range(10)), scale_by_half=False), rel=1e-5)
    assert m['accuracy'] == pytest.approx(float((raw.argmax(1) == t).float().mean()))
    assert it.calibration(5)['ece'] == pytest.approx(multiclass_calibration_error(p, t, 10, 5).item(), abs=1e-6)
    it.plot_reliability()
    fig = plt.gcf()
    assert f"ECE {100 * m['ece']:.2f}%" in fig.axes[0].get_title()
    fig.savefig(tmp_path/'digits.png'); plt.close(fig)
    unlabelled = ClassificationInterpretation.from_learner(vision, dl=vision.dls.test_dl(vision.dls.valid.items[:8]))
    with pytest.raises(ValueError, match='needs targets'): unlabelled.calibration()
    with pytest.raises(ValueError, match='needs targets'): unlabelled.plot_reliability()

def test_interpretation_calibration_multilabel(multilabel, tmp_path):
    it = ClassificationInterpretation.from_learner(multilabel)
    raw, y = raw_outputs(multilabel, multilabel.dls.valid), valid_targets(multilabel)
    m = it.calibration()
    assert m['ece'] == pytest.approx(binary_calibration_error(torch.sigmoid(raw), y).item(), abs=1e-6)
    np.testing.assert_allclose(m['label_ece'].values, [binary_calibration_error(torch.sigmoid(raw[:, l]), y[:, l]).item() for l in range(3)], atol=1e-6)
    assert m['nll'] == pytest.approx(F.binary_cross_entropy_with_logits(raw, y).item(), rel=1e-4)
    it.plot_reliability()
    fig = plt.gcf()
    assert 'all labels pooled' in fig.axes[0].get_title()
    fig.savefig(tmp_path/'multilabel.png'); plt.close(fig)

def test_interpretation_mc_dropout_measures(vision):
    torch.manual_seed(5)
    with vision.no_bar(): it = ClassificationInterpretation.from_learner(vision, mc_dropout=4)
    torch.manual_seed(5)
    with vision.no_bar(): r = mc_dropout(vision, 4)
    torch.testing.assert_close(it.probs, r.probs)
    torch.testing.assert_close(it.losses, -r.probs[torch.arange(len(r.probs)), r.targs].log())  # NLL of the mean, as TTA's
    assert torch.equal(it.decoded, r.probs.argmax(1))
    for m in ('mutual_info', 'variance'):
        s, i = it.most_uncertain(10, measure=m)
        assert i.tolist() == np.argsort(-getattr(r, m).numpy(), kind='stable')[:10].tolist()
        np.testing.assert_array_equal(it.to_df()[m].values, getattr(r, m).numpy())
    with pytest.raises(ValueError, match='mc_dropout'): ClassificationInterpretation.from_learner(vision, mc_dropout=3, tta=True)
    with vision.no_bar(): unlabelled = ClassificationInterpretation.from_learner(vision, dl=vision.dls.test_dl(vision.dls.valid.items[:8]), mc_dropout=3)
    assert unlabelled.targs is None and unlabelled.losses is None and len(unlabelled.most_uncertain(3, 'mutual_info')[1]) == 3
    plain = ClassificationInterpretation.from_learner(vision)
    with pytest.raises(ValueError, match='mc_dropout=20'): plain.most_uncertain(5, measure='mutual_info')
    assert 'mutual_info' not in plain.to_df()
