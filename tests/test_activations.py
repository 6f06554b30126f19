"The registry resolves every loss to the right activation, decodes and kind"
import functools, warnings
import pytest, torch
import torch.nn as nn
import torch.nn.functional as F
from fastai.losses import *

import fastinterp
from fastinterp import activation_for, register_activation, registered_losses

class MyCrossEntropy(nn.CrossEntropyLoss): "A user's subclass: still softmax"

x = torch.tensor([[2.0, -1.0, 0.5], [-0.3, 0.1, 0.4]])

def softmax(t): return torch.softmax(t, 1)
def sigmoid(t): return torch.sigmoid(t)

CASES = [ # loss, kind, reference activation of `x`, reference decodes of the probabilities
    (nn.CrossEntropyLoss(),                          'multiclass', softmax,   lambda p: p.argmax(1)),
    (nn.CrossEntropyLoss(weight=torch.ones(3)),      'multiclass', softmax,   lambda p: p.argmax(1)),
    (nn.CrossEntropyLoss(label_smoothing=0.1),       'multiclass', softmax,   lambda p: p.argmax(1)),
    (nn.CrossEntropyLoss(ignore_index=255),          'multiclass', softmax,   lambda p: p.argmax(1)),
    (F.cross_entropy,                                'multiclass', softmax,   lambda p: p.argmax(1)),
    (functools.partial(F.cross_entropy, label_smoothing=0.1), 'multiclass', softmax, lambda p: p.argmax(1)),
    (MyCrossEntropy(),                               'multiclass', softmax,   lambda p: p.argmax(1)),
    (nn.NLLLoss(),                                   'multiclass', torch.exp, lambda p: p.argmax(1)),
    (F.nll_loss,                                     'multiclass', torch.exp, lambda p: p.argmax(1)),
    (nn.KLDivLoss(reduction='batchmean'),            'multiclass', torch.exp, lambda p: p.argmax(1)),
    (nn.BCEWithLogitsLoss(),                         'multilabel', sigmoid,   lambda p: p > 0.5),
    (F.binary_cross_entropy_with_logits,             'multilabel', sigmoid,   lambda p: p > 0.5),
    (nn.MultiLabelSoftMarginLoss(),                  'multilabel', sigmoid,   lambda p: p > 0.5),
    (nn.BCELoss(),                                   'multilabel', lambda t: t, lambda p: p > 0.5),
    (F.binary_cross_entropy,                         'multilabel', lambda t: t, lambda p: p > 0.5),
    (nn.MSELoss(),                                   'regression', lambda t: t, lambda p: p),
    (nn.L1Loss(),                                    'regression', lambda t: t, lambda p: p),
    (nn.SmoothL1Loss(),                              'regression', lambda t: t, lambda p: p),
    (nn.HuberLoss(),                                 'regression', lambda t: t, lambda p: p),
    (CrossEntropyLossFlat(),                         'multiclass', softmax,   lambda p: p.argmax(1)),
    (BCEWithLogitsLossFlat(),                        'multilabel', sigmoid,   lambda p: p > 0.5),
    (BCEWithLogitsLossFlat(thresh=0.7),              'multilabel', sigmoid,   lambda p: p > 0.7),
    (BCELossFlat(),                                  'multilabel', lambda t: t, lambda p: p > 0.5),
    (FocalLoss(),                                    'multiclass', softmax,   lambda p: p.argmax(1)),
    (FocalLossFlat(),                                'multiclass', softmax,   lambda p: p.argmax(1)),
    (LabelSmoothingCrossEntropy(),                   'multiclass', softmax,   lambda p: p.argmax(1)),
    (LabelSmoothingCrossEntropyFlat(),               'multiclass', softmax,   lambda p: p.argmax(1)),
    (MSELossFlat(),                                  'regression', lambda t: t, lambda p: p),
]

@pytest.mark.parametrize('loss,kind,ref_act,ref_dec', CASES, ids=[repr(c[0])[:60] for c in CASES])
def test_registry_resolves(loss, kind, ref_act, ref_dec):
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a known loss never warns
        rec = activation_for(loss)
    assert rec.kind == kind
    inp = x.sigmoid() if ref_act is not softmax and rec.name == 'identity' and kind == 'multilabel' else x
    probs = rec.act(inp)
    torch.testing.assert_close(probs, ref_act(inp))
    assert torch.equal(rec.decodes(probs), ref_dec(probs))

def test_fastai_losses_keep_their_own_activation():
    "A loss's own `activation`/`decodes` win over the registry (the thresh of BCEWithLogitsLossFlat, the axis of the Flat losses)"
    loss = CrossEntropyLossFlat(axis=1)
    seg = torch.randn(2, 3, 4, 4)
    rec = activation_for(loss)
    torch.testing.assert_close(rec.act(seg), torch.softmax(seg, 1))
    assert torch.equal(rec.decodes(rec.act(seg)), seg.argmax(1))
    loss = BCEWithLogitsLossFlat(thresh=0.2)
    p = activation_for(loss).act(x)
    assert torch.equal(activation_for(loss).decodes(p), p > 0.2)

def test_unknown_loss_warns_once_with_the_line_that_registers_it():
    def my_loss(out, targ): return F.cross_entropy(out, targ)
    with pytest.warns(UserWarning, match=r"my_loss.*register_activation\(.*my_loss, 'softmax', kind='multiclass'\)"):
        rec = activation_for(my_loss)
    assert rec.kind == 'unknown' and torch.equal(rec.act(x), x)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        activation_for(my_loss)  # once is enough

def test_register_function_and_decorator_forms():
    class PolyLoss(nn.Module):
        def forward(self, out, targ): return F.cross_entropy(out, targ)
    with pytest.warns(UserWarning, match='PolyLoss'): assert activation_for(PolyLoss()).kind == 'unknown'
    register_activation(PolyLoss, 'softmax')
    torch.testing.assert_close(activation_for(PolyLoss()).act(x), torch.softmax(x, 1))

    @register_activation(act='sigmoid', kind='multilabel', thresh=0.3)
    def tagging_loss(out, targ): return F.binary_cross_entropy_with_logits(out, targ)
    rec = activation_for(tagging_loss)
    assert callable(tagging_loss) and rec.kind == 'multilabel'
    assert torch.equal(rec.decodes(rec.act(x)), x.sigmoid() > 0.3)

    @register_activation(act=lambda o: torch.softmax(o / 2, 1), decodes=lambda p: p.argmin(1))
    class Odd(nn.Module): pass
    rec = activation_for(Odd())
    torch.testing.assert_close(rec.act(x), torch.softmax(x / 2, 1))
    assert torch.equal(rec.decodes(rec.act(x)), rec.act(x).argmin(1))
    assert 'PolyLoss' in ' '.join(registered_losses())
    with pytest.warns(UserWarning, match='Overwriting'): register_activation(PolyLoss, 'softmax')

@pytest.mark.parametrize('bad,err,match', [
    (None, TypeError, r'no loss function.*loss_func='),
    (3.5, TypeError, r'must be callable.*float'),
    ('cross_entropy', TypeError, r'must be callable'),
])
def test_activation_for_bad_input(bad, err, match):
    with pytest.raises(err, match=match): activation_for(bad)

@pytest.mark.parametrize('kw,match', [
    (dict(loss=F.cross_entropy, act='softmx'), r"Unknown activation 'softmx'.*softmax, sigmoid, exp, identity"),
    (dict(loss=F.cross_entropy, act='softmax', kind='binary'), r"Unknown kind 'binary'.*multiclass, multilabel"),
])
def test_register_bad_input(kw, match):
    with pytest.raises(ValueError, match=match): register_activation(**kw)

def test_register_not_callable():
    with pytest.raises(TypeError, match='loss class or function'): register_activation('nll', 'exp')

def test_shape_that_does_not_fit_the_kind():
    rec = activation_for(nn.CrossEntropyLoss())
    with pytest.raises(ValueError, match=r'multi-class loss.*shape \(5,\).*BCEWithLogitsLoss'): rec.check(torch.randn(5))
    with pytest.warns(UserWarning, match=r'softmax over one number is always 1\.0'): rec.check(torch.randn(5, 1))

class _WrapsCE(nn.Module):
    "A user's loss module that calls a registered loss inside: fastinterp cannot see what forward does with it"
    def __init__(self): super().__init__(); self.ce = nn.CrossEntropyLoss()
    def forward(self, out, targ): return self.ce(out, targ)

def test_a_wrapper_module_is_not_guessed_but_named_in_the_warning():
    with pytest.warns(UserWarning, match=r"holds CrossEntropyLoss \(softmax\).*register_activation\(.*_WrapsCE, 'softmax'"):
        rec = activation_for(_WrapsCE())
    assert rec.kind == 'unknown' and rec.name == 'identity'

def test_fastai_flattened_losses_own_softmax_and_sigmoid_are_known_as_safe():
    "fastai's own activation methods need no range pass; a subclass that overrides one is checked like any other"
    for loss in (CrossEntropyLossFlat(), FocalLossFlat(), LabelSmoothingCrossEntropyFlat(), nn.CrossEntropyLoss()):
        a = activation_for(loss)
        assert a.bounded and a.plain_softmax, loss
    a = activation_for(BCEWithLogitsLossFlat())
    assert a.bounded and not a.plain_softmax
    class Doubled(CrossEntropyLossFlat):
        def activation(self, x): return F.softmax(x, dim=-1) * 2
    class Shifted(CrossEntropyLossFlat):
        def decodes(self, x): return x.argmax(dim=-1) + 1
    assert not activation_for(Doubled()).bounded and not activation_for(Doubled()).plain_softmax
    assert activation_for(Shifted()).bounded and not activation_for(Shifted()).plain_softmax
    assert not activation_for(nn.NLLLoss()).bounded and not activation_for(nn.BCELoss()).bounded
