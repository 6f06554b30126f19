"""The drop-in promise: every fastai parameter keeps fastai's meaning, fastai's own losses give fastai's results,
`import fastinterp` prints nothing and changes no fastai global beyond its documented patch"""
import inspect, io, json, subprocess, sys, textwrap, warnings
from contextlib import contextmanager, redirect_stdout
import numpy as np, pytest, torch
import torch.nn as nn
import fastai.interpret
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat, BCEWithLogitsLossFlat
from fastai.torch_core import set_seed

import fastinterp
from fastinterp.data import digits_learner
from conftest import fit_quietly

def run_python(code):
    "Run `code` in a fresh interpreter; its stdout and stderr"
    r = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout, r.stderr

def test_import_prints_nothing_and_loads_no_progress_bar_nor_accelerate():
    out, err = run_python('''
        import sys, json, io, warnings
        from contextlib import redirect_stderr, redirect_stdout
        from fastai.basics import *
        from fastai.tabular.learner import *
        before = [c.__name__ for c in defaults.callbacks]
        said = io.StringIO()
        with redirect_stderr(said), redirect_stdout(said):
            warnings.simplefilter('default')  # every warning shown, as in a notebook
            import fastinterp
        assert said.getvalue() == '', said.getvalue()
        print(json.dumps([before, [c.__name__ for c in defaults.callbacks],
                          'fastai.callback.progress' in sys.modules, 'accelerate' in sys.modules]))
    ''')
    before, after, progress, accelerate = json.loads(out)
    assert before == after == ['TrainEvalCallback', 'Recorder', 'CastToTensor'] and not progress and not accelerate

def test_unpatch_restores_every_attribute_patch_changed():
    out, err = run_python('''
        import json, warnings
        warnings.simplefilter('ignore')
        import fastai.interpret, fastai.learner, fastai.tabular.learner, fastai.distributed
        from fastai.learner import defaults
        owners = [fastai.learner.Learner, fastai.tabular.learner.TabularLearner,
                  fastai.interpret.ClassificationInterpretation, fastai.distributed.DistributedDL]
        snap = lambda: [{k: id(v) for k, v in vars(o).items()} for o in owners] + [[id(c) for c in defaults.callbacks]]
        before = snap()
        import fastinterp
        patched = snap()
        fastinterp.unpatch()
        after = snap()
        fastinterp.patch(); fastinterp.patch()  # twice: the same as once
        again = snap()
        print(json.dumps([before == after, before != patched, again == patched]))
    ''')
    assert json.loads(out) == [True, True, True]

def test_someone_elses_distributed_broadcast_is_left_alone():
    "fastai's 20a_distributed notebook mocks DistributedDL._broadcast, then imports more: the mock must stay"
    out, err = run_python('''
        import warnings
        warnings.simplefilter('ignore')
        from fastai.distributed import DistributedDL
        def _broadcast(self, t, rank): return t
        DistributedDL._broadcast = _broadcast
        import fastinterp
        from fastinterp.distributed import cpu_broadcast
        fastinterp.unpatch(); fastinterp.patch()
        with cpu_broadcast(): inside = DistributedDL._broadcast is _broadcast
        print(inside, DistributedDL._broadcast is _broadcast)
    ''')
    assert out.split() == ['True', 'True']

def test_the_broadcast_fix_is_on_for_a_pass_only_and_unpatch_reverts_it():
    "fastai's own DistributedDL._broadcast moves to CUDA: replaced for gloo within a pass, and given back by unpatch()"
    out, err = run_python('''
        import os, warnings
        warnings.simplefilter('ignore')
        import torch.distributed as dist
        from fastai.distributed import DistributedDL
        import fastinterp
        from fastinterp.distributed import cpu_broadcast
        own = DistributedDL._broadcast
        os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT='29533')
        dist.init_process_group('gloo', rank=0, world_size=1)
        try:
            with cpu_broadcast():
                fixed = DistributedDL._broadcast is not own and fastinterp.is_patched()
                fastinterp.unpatch()  # in the middle of a pass: fastai's own again, and after it too
                reverted = DistributedDL._broadcast is own
            print(fixed, reverted, DistributedDL._broadcast is own)
            fastinterp.patch()
            with cpu_broadcast(): pass
            print(DistributedDL._broadcast is own)
        finally: dist.destroy_process_group()
    ''')
    assert out.split() == ['True', 'True', 'True', 'True']

# --- every stock parameter, with fastai's meaning
def _stock_methods():
    "(owner, name, fastai's function) of every public method of fastai's interpretation and Learner's prediction calls"
    res = []
    for owner in (fastai.interpret.Interpretation, fastai.interpret.ClassificationInterpretation):
        for name, f in vars(owner).items():
            if name.startswith('_') and name not in ('__getitem__',): continue
            if callable(f) or isinstance(f, classmethod): res.append((owner, name))
    return res + [(Learner, 'get_preds'), (Learner, 'predict'), (Learner, 'tta')]

@contextmanager
def stock_fastai():
    fastinterp.unpatch()
    try: yield
    finally: fastinterp.patch()

def _signatures(owner, name):
    with stock_fastai(): stock = inspect.signature(getattr(owner, name))
    ours_owner = fastinterp.ClassificationInterpretation if owner is not Learner else Learner
    return stock, inspect.signature(getattr(ours_owner, name))

# a default that means the same in fastinterp as fastai's: fastai's normalize=False is fastinterp's None (counts)
_SAME_MEANING = {('plot_confusion_matrix', 'normalize'): {False, None}}

@pytest.mark.parametrize('owner,name', _stock_methods(), ids=lambda x: getattr(x, '__name__', x))
def test_every_stock_parameter_is_accepted_with_its_default(owner, name):
    stock, ours = _signatures(owner, name)
    takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in ours.parameters.values())
    for pname, p in stock.parameters.items():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or pname in ('self', 'cls'): continue
        if pname not in ours.parameters:
            assert takes_kwargs and p.kind == p.KEYWORD_ONLY, f"{name} does not take fastai's {pname}"
            continue
        q = ours.parameters[pname]
        if p.default is not p.empty:
            same = _SAME_MEANING.get((name, pname), {p.default})
            assert q.default == p.default or q.default in same, f"{name}({pname}=...) default {q.default!r}, fastai's {p.default!r}"
    # positional parameters stay where fastai has them
    pos = lambda sig: [n for n, p in sig.parameters.items() if p.kind == p.POSITIONAL_OR_KEYWORD]
    assert pos(ours)[:len(pos(stock))] == pos(stock), name

def test_get_preds_keyword_only_parameters_work(digits_vision, tmp_path):
    learn = digits_vision
    with learn.no_bar():
        res = learn.get_preds(with_preds=False, with_targs=True)
        assert res[0] is None and len(res[1]) == len(learn.dls.valid_ds)
        p, t = learn.get_preds(concat_dim=0, pickle_protocol=2)
        torch.testing.assert_close(p.sum(1), torch.ones(len(p)))

# --- fastai's own losses: fastai's own results
@pytest.fixture(scope='module')
def flat_learner(digits_path):
    return fit_quietly(digits_learner(digits_path, loss_func=CrossEntropyLossFlat()), 1)

def test_fastai_loss_get_preds_predict_and_views_equal_stock(flat_learner):
    learn = flat_learner
    files = learn.dls.valid.items[:5]
    with learn.no_bar():
        ours = learn.get_preds(with_decoded=True, with_loss=True)
        ours_pred = [learn.predict(f) for f in files]
        it = fastai.interpret.ClassificationInterpretation.from_learner(learn)
        with stock_fastai():
            stock = learn.get_preds(with_decoded=True, with_loss=True)
            stock_pred = [learn.predict(f) for f in files]
            sit = fastai.interpret.ClassificationInterpretation.from_learner(learn)
            s_cm, s_confused = sit.confusion_matrix(), sit.most_confused()
            s_item = sit[[0, 3]]
            buf = io.StringIO()
            with redirect_stdout(buf), warnings.catch_warnings():
                warnings.simplefilter('ignore')
                sit.print_classification_report()
            s_report = buf.getvalue()
    for a, b in zip(ours, stock): torch.testing.assert_close(a, b)
    for (l1, c1, p1), (l2, c2, p2) in zip(ours_pred, stock_pred):
        assert l1 == l2 and int(c1) == int(c2)
        torch.testing.assert_close(p1, p2)
    np.testing.assert_array_equal(it.confusion_matrix(), s_cm)
    assert [(a, p, int(n)) for a, p, n in it.most_confused()] == [(a, p, int(n)) for a, p, n in s_confused]
    l, i = it.top_losses(10)
    sl, si = sit.top_losses(10)
    torch.testing.assert_close(l, sl)
    buf = io.StringIO()
    with redirect_stdout(buf): it.print_classification_report()
    assert buf.getvalue() == s_report
    ours_item = it[[0, 3]]
    torch.testing.assert_close(ours_item[0], s_item[0])  # the inputs
    torch.testing.assert_close(ours_item[1], s_item[1])  # probabilities
    assert torch.equal(ours_item[2], s_item[2]) and torch.equal(ours_item[3].view(-1), s_item[3].view(-1))

def test_fastai_loss_tta_equals_stock(flat_learner):
    learn = flat_learner
    with learn.no_bar():
        set_seed(7); ours = learn.tta(n=2)
        with stock_fastai(): set_seed(7); stock = learn.tta(n=2)
    torch.testing.assert_close(ours[0], stock[0])
    assert torch.equal(ours[1], stock[1])

def test_fastai_multilabel_loss_equals_stock(digits_arrays):
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    X, y = digits_arrays
    Y = torch.stack([y % 2 == 0, y > 4, y == 0], 1).float()
    set_seed(0)
    dls = DataLoaders(DataLoader(list(zip(X[:300], Y[:300])), bs=32, shuffle=True), DataLoader(list(zip(X[300:600], Y[300:600])), bs=64))
    learn = fit_quietly(Learner(dls, nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 3)),
                                loss_func=BCEWithLogitsLossFlat(thresh=0.3)), 3)
    with learn.no_bar():
        ours = learn.get_preds(with_decoded=True, with_loss=True)
        with stock_fastai(): stock = learn.get_preds(with_decoded=True, with_loss=True)
    for a, b in zip(ours, stock): torch.testing.assert_close(a, b)
