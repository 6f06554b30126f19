"A temperature changes how sure a prediction is, never the prediction; every number follows the same probabilities"
import math, warnings
import numpy as np, pandas as pd, pytest, torch
import torch.nn as nn
import torch.nn.functional as F
from fastai.learner import Learner
from fastai.data.core import DataLoaders
from fastai.losses import BCEWithLogitsLossFlat
from fastai.torch_core import set_seed
from fastai.data.load import DataLoader as FaDataLoader

import fastinterp
from fastinterp.interpret import ClassificationInterpretation
from fastinterp.interpret import StreamingInterpretation
from fastinterp.data import digits_learner
from conftest import raw_outputs, fit_quietly

def logits_learner(z, y, loss_func, bs=16):
    "A learner whose model hands back its input: the outputs are exactly the logits `z`, item by item"
    model = nn.Linear(z.shape[1], z.shape[1], bias=False)
    with torch.no_grad(): model.weight.copy_(torch.eye(z.shape[1]))
    items = list(zip(z, y))
    return Learner(DataLoaders(FaDataLoader(items, bs=bs), FaDataLoader(items, bs=bs)), model, loss_func=loss_func)

def synthetic_multilabel(n=40, L=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, L, generator=g) * 2
    return z, (torch.rand(n, L, generator=g) < torch.sigmoid(z)).float()

@pytest.mark.parametrize('T', [2.5, [0.5, 2., 3., 0.7]])
def test_multilabel_temperature_moves_no_decision(T):
    "thresh 0.3: sigmoid(z / T) > 0.3 would flip many decisions; every view decides as sigmoid(z) > 0.3 does"
    z, y = synthetic_multilabel()
    learn = logits_learner(z, y, BCEWithLogitsLossFlat(thresh=0.3))
    want_dec = torch.sigmoid(z) > 0.3
    Tt = torch.as_tensor(T, dtype=torch.float32)
    assert ((torch.sigmoid(z / Tt) > 0.3) != want_dec).sum() > 10  # the decisions a naive threshold would flip
    want_acc = (want_dec == y.bool()).float().mean().item()
    learn.temperature = T
    with learn.no_bar():
        p, t, dec = learn.get_preds(with_decoded=True)
        interp = ClassificationInterpretation.from_learner(learn)
        tta = ClassificationInterpretation.from_learner(learn, tta=2, batch_tfms=lambda b: b)
    torch.testing.assert_close(p, torch.sigmoid(z / Tt))
    assert torch.equal(dec.bool(), want_dec)
    for it in (interp, tta):
        assert torch.equal(it.decoded.bool(), want_dec)
        assert it.calibration()['accuracy'] == pytest.approx(want_acc)
        # most uncertain: closest to the decision boundary, which at T sits where p(label) = sigmoid(logit(0.3) / T)
        bound = torch.sigmoid(math.log(0.3 / 0.7) / Tt)
        u = 1 - (it.probs - bound).abs() / torch.maximum(bound, 1 - bound)
        torch.testing.assert_close(it.uncertainty(), u.max(1).values)
    assert tta.tta_report.loc['un-augmented', 'accuracy'] == pytest.approx(want_acc)
    label, _, probs = learn.predict(z[3])
    assert torch.equal(label.bool(), want_dec[3])

def test_calibrate_multilabel_with_threshold_keeps_accuracy(digits_arrays):
    "calibrate's own table: the accuracy before and after a per-label temperature is the same at thresh 0.3"
    X, y = digits_arrays
    Y = torch.stack([y % 2 == 0, y % 2 == 1, y > 4], 1).float()
    set_seed(0)
    n = 400
    dls = DataLoaders(FaDataLoader(list(zip(X[:n], Y[:n])), bs=32, shuffle=True), FaDataLoader(list(zip(X[n:], Y[n:])), bs=256))
    learn = fit_quietly(Learner(dls, nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3)),
                                loss_func=BCEWithLogitsLossFlat(thresh=0.3), wd=0.), 30)
    raw = raw_outputs(learn, learn.dls.valid)
    with learn.no_bar(): res = learn.calibrate(quiet=True); _, _, dec = learn.get_preds(with_decoded=True)
    assert res.loc['before', 'accuracy'] == res.loc['after', 'accuracy']
    assert torch.equal(dec.bool(), torch.sigmoid(raw) > 0.3)

def test_one_output_sigmoid_threshold_and_temperature():
    "A binary model with one sigmoid output and thresh 0.3: the two-class interpretation and the stream decide alike"
    g = torch.Generator().manual_seed(3)
    z = torch.randn(60, 1, generator=g) * 2
    y = (torch.rand(60, 1, generator=g) < torch.sigmoid(z)).float()
    learn = logits_learner(z, y, BCEWithLogitsLossFlat(thresh=0.3))
    learn.temperature = 3.0
    want = (torch.sigmoid(z[:, 0]) > 0.3).long()
    with learn.no_bar():
        it = ClassificationInterpretation.from_learner(learn)
        st = StreamingInterpretation.from_learner(learn, k=5, progress=False)
    assert torch.equal(it.decoded, want)
    torch.testing.assert_close(it.probs[:, 1], torch.sigmoid(z[:, 0] / 3))
    cm = np.zeros((2, 2), dtype=int)
    np.add.at(cm, (y[:, 0].long().numpy(), want.numpy()), 1)
    np.testing.assert_array_equal(it.confusion_matrix(), cm)
    np.testing.assert_array_equal(st.confusion_matrix(), cm)

@pytest.mark.parametrize('T', [0.5, 2.0])
def test_losses_follow_the_temperature(digits_vision, T):
    "losses, p_target, top losses and their titles all describe softmax(raw / T)"
    learn = digits_vision
    raw = raw_outputs(learn, learn.dls.valid)
    t = torch.cat([b[1] for b in learn.dls.valid]).as_subclass(torch.Tensor)
    want = F.cross_entropy(raw / T, t, reduction='none')
    learn.temperature = T
    try:
        with learn.no_bar():
            it = ClassificationInterpretation.from_learner(learn)
            _, _, losses = learn.get_preds(with_loss=True)
            st = ClassificationInterpretation.from_learner(learn, streaming=True, k=10, progress=False)
        torch.testing.assert_close(it.losses, want, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(losses, want, rtol=1e-4, atol=1e-5)
        df = it.to_df()
        np.testing.assert_allclose(df['loss'], -np.log(df['p_target']), rtol=1e-4, atol=1e-5)
        top = want.argsort(descending=True, stable=True)[:10]
        assert it.top_losses(10)[1].tolist() == top.tolist()
        assert st.top_losses(10)[1].tolist() == top.tolist()
        torch.testing.assert_close(st.top_losses(10)[0], want[top], rtol=1e-4, atol=1e-5)
    finally: learn.temperature = None

def test_nll_loss_losses_follow_the_temperature(digits_arrays):
    "A log-softmax model trained with NLLLoss: at T the loss is -log softmax(log p / T) of the target"
    X, y = digits_arrays
    z = F.log_softmax(torch.randn(len(X[:200]), 10, generator=torch.Generator().manual_seed(0)) * 3, 1)
    learn = logits_learner(z, y[:200], nn.NLLLoss())
    learn.temperature = 1.7
    with learn.no_bar(): it = ClassificationInterpretation.from_learner(learn)
    torch.testing.assert_close(it.losses, -torch.log_softmax(z / 1.7, 1).gather(1, y[:200, None])[:, 0], rtol=1e-4, atol=1e-5)

@pytest.mark.parametrize('value,err,match', [
    (0, ValueError, 'positive'), (-1, ValueError, 'positive'), (float('nan'), ValueError, 'positive'),
    (float('inf'), ValueError, 'positive'), ('abc', TypeError, 'positive number'), (True, TypeError, 'positive number'),
    ([1., -2.], ValueError, 'positive'), ([[1., 2.]], TypeError, 'one per label'),
])
def test_temperature_is_checked_where_it_is_set(value, err, match):
    z, y = synthetic_multilabel(8, 2)
    learn = logits_learner(z, y, nn.BCEWithLogitsLoss())
    with pytest.raises(err, match=match): learn.temperature = value
    assert learn.temperature is None

def test_temperature_values_accepted_and_used():
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(20, 3, generator=g), torch.randint(0, 3, (20,), generator=g)
    learn = logits_learner(z, y, nn.CrossEntropyLoss())
    for T in (2, np.float32(2.0), torch.tensor(2.0)):
        learn.temperature = T
        assert learn.temperature == 2.0 and isinstance(learn.temperature, float)
        with learn.no_bar(): torch.testing.assert_close(learn.get_preds()[0], torch.softmax(z / 2, 1))
    learn.temperature = [1., 2., 3.]  # one per label on a softmax: refused where it would be used
    with pytest.raises(ValueError, match='one per label.*takes one temperature'), learn.no_bar(): learn.get_preds()
    learn.temperature = None
    assert 'temperature' not in vars(learn) or vars(learn)['temperature'] is None
