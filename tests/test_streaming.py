"Streaming interpretation: equal to the in-memory one, whatever the batches, the merges and the processes"
import datetime, itertools, os, socket, time
import numpy as np, pytest, torch
import torch.nn as nn
import torch.nn.functional as F
import torch.distributed as dist
import torch.multiprocessing as mp
import sklearn.metrics as skm
import matplotlib.pyplot as plt

from fastai.data.load import DataLoader as FaDataLoader
from fastai.learner import _ConstantFunc
from fastai.losses import CrossEntropyLossFlat, FocalLossFlat, LabelSmoothingCrossEntropyFlat

from fastinterp.core import topk as _topk
from fastinterp.distributed import cpu_broadcast
from fastinterp.interpret import ClassificationInterpretation, StreamingInterpretation
from fastinterp.loaders import _dataset_idxs
from fastinterp import stats
from fastinterp.stats import StreamingStats, _bound, _score
from fastinterp.streaming import StreamingCallback
from fastinterp.uncertainty import MEASURES, _margin_of
from fastinterp.calibration import calibration_bins, calibration_metrics, brier, nll
from fastinterp.data import digits_learner
from conftest import plain_learner, fit_quietly, raw_outputs

C, K = 6, 25

def tied_data(n=997, seed=0):
    "Probabilities, targets and cross-entropy losses of rounded logits: many items share every score exactly"
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, C, generator=g) * 0.7).round()
    targs = torch.randint(0, C, (n,), generator=g)
    return logits.softmax(1), targs, F.cross_entropy(logits, targs, reduction='none')

def ref_top(scores, k):
    "Indices of the top `k` scores, ties to the lower index, by numpy's lexsort (independent of the code under test)"
    s = np.asarray(scores)
    return np.lexsort((np.arange(len(s)), -s))[:k]

def stream(probs, targs, losses, sizes, k=K, idxs=None, measures=tuple(MEASURES)):
    "A collector fed the items `idxs` (all, in order, by default) in batches of `sizes`, cycled"
    s = StreamingStats(probs.shape[1], k, measures=measures)
    idxs = torch.arange(len(probs)) if idxs is None else idxs
    start = 0
    for size in itertools.cycle(sizes):
        if start >= len(idxs): return s
        b = idxs[start:start + size]
        start += size
        s.update(probs[b], None if targs is None else targs[b], None if losses is None else losses[b], b)

def assert_same(a, b):
    "Two computed states hold the same figures and kept items: exactly, but for float64 sums added in another order"
    assert a['n'] == b['n']
    np.testing.assert_array_equal(a['pred_counts'], b['pred_counts'])
    np.testing.assert_array_equal(a['confusion'], b['confusion'])
    for x, y in zip(a['calibration_bins'], b['calibration_bins']): assert torch.equal(x, y)
    for f in ('brier_sum', 'nll_sum'): assert a[f] == pytest.approx(b[f], rel=1e-12)
    assert a['top'].keys() == b['top'].keys()
    for l in a['top']:
        for f, v in a['top'][l].items(): torch.testing.assert_close(v, b['top'][l][f], rtol=0, atol=0, equal_nan=True)

@pytest.fixture(params=[None, 40])
def hold(request, monkeypatch):
    "Small batches held back in blocks of 2**21 values (all of these small sets: one block), or of 40 rows (many)"
    if request.param: monkeypatch.setattr(stats, '_HOLD', request.param * C)
    return request.param

# --- the collector on its own: exact top-k with ties, counts, merges
@pytest.mark.parametrize('sizes', [[1], [7], [64], [1000], [3, 250, 1, 99]])
@pytest.mark.parametrize('k', [1, K, 997])
def test_topk_and_counts_with_ties(sizes, k, hold):
    probs, targs, losses = tied_data()
    res = stream(probs, targs, losses, sizes, k).compute()
    lists = {'loss': losses, **{m: f(probs) for m, f in MEASURES.items()}}
    for name, scores in lists.items():
        assert len(np.unique(scores.numpy())) < 997 // 4  # rounded logits: ties everywhere
        want = ref_top(scores.numpy(), k)
        kept = res['top'][name]
        np.testing.assert_array_equal(kept['idx'].numpy(), want, err_msg=name)
        assert torch.equal(kept['idx'], _topk(scores, k)[1])  # the in-memory interpretation's order
        assert torch.equal(kept['score'], scores[want]) and torch.equal(kept['probs'], probs[want])
        assert torch.equal(kept['targ'], targs[want]) and torch.equal(kept['loss'], losses[want])
        assert torch.equal(kept['decoded'], probs[want].argmax(1))
    d = probs.argmax(1).numpy()
    np.testing.assert_array_equal(res['confusion'], skm.confusion_matrix(targs.numpy(), d, labels=range(C)))
    np.testing.assert_array_equal(res['pred_counts'], np.bincount(d, minlength=C))
    assert res['n'] == 997
    # the bin sums are float64 sums of float32 confidences: exact at this size, so equal whatever the batches
    for x, y in zip(res['calibration_bins'], calibration_bins(probs, targs)): assert torch.equal(x, y)
    # Brier and NLL: float64 sums of per-item terms, batch by batch, against one mean over every item: float64 rounding apart
    assert res['brier_sum'] / 997 == pytest.approx(brier(probs, targs), rel=1e-12)
    assert res['nll_sum'] / 997 == pytest.approx(nll(probs, targs), rel=1e-12)

def test_many_classes_and_confident_items(monkeypatch):
    "A wide, mostly confident classifier: most items never get scored in full, and the lists are still exact"
    monkeypatch.setattr(stats, '_HOLD', 256 * 300)  # blocks of 256 rows: the bounds skip items from the second on
    g = torch.Generator().manual_seed(2)
    n, c = 6000, 300
    targs = torch.randint(0, c, (n,), generator=g)
    logits = torch.randn(n, c, generator=g) * 2
    logits[torch.arange(n), targs] += 4 + 6 * torch.rand(n, generator=g)
    probs, losses = logits.softmax(1), F.cross_entropy(logits, targs, reduction='none')
    res = stream(probs, targs, losses, [128], k=10).compute()
    for name, f in MEASURES.items():
        np.testing.assert_array_equal(res['top'][name]['idx'].numpy(), ref_top(f(probs).numpy(), 10), err_msg=name)
    np.testing.assert_array_equal(res['top']['loss']['idx'].numpy(), ref_top(losses.numpy(), 10))
    for x, y in zip(res['calibration_bins'], calibration_bins(probs, targs)): assert torch.equal(x, y)

def test_rows_that_sum_to_1_only_within_the_tolerance(monkeypatch):
    "Rows summing to 1 + 1e-3 lift a measure over the bound from the top probability: such items must still be scored"
    monkeypatch.setattr(stats, '_HOLD', 64 * 2)  # blocks of 64 rows: most are bounded before they are scored
    g = torch.Generator().manual_seed(4)
    e = torch.rand(3000, generator=g) * 4e-4  # two classes, sure of the first: normalized entropy up to 0.005
    probs = torch.stack([1 - e, e], 1)
    probs[2500:] = torch.stack([torch.ones(500), 9.5e-4 + e[2500:] / 8], 1)  # rows of [1, ~1e-3]: bound 0, entropy ~0.0099
    res = stream(probs, None, None, [64], k=10).compute()
    for name, f in MEASURES.items():
        want = ref_top(f(probs).numpy(), 10)
        if name != 'least_confidence': assert (want >= 2500).all(), name  # items the bound alone would skip
        np.testing.assert_array_equal(res['top'][name]['idx'].numpy(), want, err_msg=name)

@pytest.mark.parametrize('c', [2, 3, 10, 100, 1000])
def test_bounds_are_above_every_measure(c):
    "The bound of each measure from the top probability and the sum of squares is never below the measure itself"
    g = torch.Generator().manual_seed(c)
    rows = [torch.distributions.Dirichlet(torch.full((c,), a)).sample((2000,)) for a in (0.01, 0.1, 1., 10., 1000.)]
    eye = torch.eye(c)
    rows += [torch.full((1, c), 1 / c), eye[:2], (eye[:1] + eye[1:2]) / 2]  # uniform, one-hot, a tie of two
    probs = torch.cat(rows).float()
    probs = probs / probs.sum(1, keepdim=True)
    pmax, sq = probs.max(1).values, (probs.double() ** 2).sum(1)
    for name in stats._SLACK:  # the measures with a bound (least confidence is scored from the top probability)
        f = MEASURES[name]
        over = (f(probs).double() - _bound(name, pmax, sq, c)).max().item()
        assert over <= 1e-5, (name, over)  # float32 rounding of the measure alone; the slack covers far more

@pytest.mark.parametrize('c', [2, 3, 10, 100])
def test_slack_covers_rows_that_sum_to_1_only_within_the_tolerance(c):
    "Rows summing to 1 -/+ ROW_TOL lift each measure over its bound by less than that measure's slack, and no less"
    from fastinterp.core import ROW_TOL
    g = torch.Generator().manual_seed(c)
    rows = [torch.distributions.Dirichlet(torch.full((c,), a)).sample((2000,)) for a in (0.01, 0.1, 1., 10., 1000.)]
    eye = torch.eye(c)
    # one sure class with a little mass beside it: where the bounds of the margin and the uniform distance are tight
    sure = eye[:1].repeat(500, 1) + torch.rand(500, 1, generator=g) * ROW_TOL * eye[1:2]
    probs = torch.cat(rows + [sure]).double()
    probs = probs / probs.sum(1, keepdim=True)
    over = {}
    for scale in (1 - 0.999 * ROW_TOL, 1 + 0.999 * ROW_TOL):
        p = (probs * scale).clamp_max(1).float()
        p = p[(p.sum(1) - 1).abs() < ROW_TOL]  # what the collector accepts
        pmax, sq = p.max(1).values, (p.double() ** 2).sum(1)
        for name in stats._SLACK:
            f = MEASURES[name]
            over[name] = max(over.get(name, -1), (f(p).double() - _bound(name, pmax, sq, c)).max().item())
    for name, o in over.items(): assert o <= stats._SLACK[name], (name, o)
    if c == 2: assert over['margin'] > 0.5 * ROW_TOL and over['uniform_distance'] > 0.5 * ROW_TOL  # the slack is needed

def test_the_margin_of_a_held_block_is_scored_in_place_and_the_block_given_back():
    "Every row of a held block: its maxima taken out for the margin and put back, bit for bit, the margin unchanged"
    probs = tied_data()[0]
    block = probs.clone()
    got = _margin_of(block, *block.max(1), put_back=True)
    assert torch.equal(block, probs) and torch.equal(got, MEASURES['margin'](probs))

def test_a_loop_that_reuses_its_batch_tensors(hold):
    "Batches held back are copies: a loop writing the next batch into the same tensors changes none of the figures"
    probs, targs, losses = tied_data()
    s, p, t, l = StreamingStats(C, K), torch.empty(50, C), torch.empty(50, dtype=torch.long), torch.empty(50)
    for start in range(0, 997, 50):
        n = min(50, 997 - start)
        p[:n], t[:n], l[:n] = probs[start:start + n], targs[start:start + n], losses[start:start + n]
        s.update(p[:n], t[:n], l[:n])
    assert_same(s.compute(), stream(probs, targs, losses, [997]).compute())

def test_the_block_of_held_batches_is_filled_again_and_let_go(monkeypatch):
    "Block after block the same buffers are filled (nothing allocated per block); the figures let them go"
    monkeypatch.setattr(stats, '_HOLD', 40 * C)
    probs, targs, losses = tied_data()
    s, buffers = StreamingStats(C, K), set()
    for start in range(0, 997, 10):
        s.update(probs[start:start + 10], targs[start:start + 10], losses[start:start + 10])
        buffers.add(s._held['probs'].data_ptr())
    assert len(buffers) == 1 and s.n == 997
    assert_same(s.compute(), stream(probs, targs, losses, [997]).compute())
    assert s._held is None  # a kept StreamingStats holds its counts and lists, not a block of rows
    s.update(probs[:10], targs[:10], losses[:10], idxs=torch.arange(997, 1007))  # and goes on after the figures
    assert s.compute()['n'] == 1007

def test_one_row_of_many_classes_scores_as_in_a_batch():
    "torch sums one row of 32,768 values or more over several threads: a lone row must still score as the whole set does"
    g = torch.Generator().manual_seed(5)
    probs = (torch.randn(8, 40_000, generator=g) * 3).softmax(1)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:  # the scoring alone: a collector of 40,000 classes would hold a 40,000 x 40,000 confusion matrix
        for name, f in MEASURES.items():
            assert torch.equal(torch.cat([_score(name, probs[i:i + 1]) for i in range(8)]), f(probs)), name
    finally: torch.set_num_threads(threads)

def test_merge_in_any_order():
    probs, targs, losses = tied_data()
    whole = stream(probs, targs, losses, [100]).compute()
    np.testing.assert_array_equal(whole['top']['loss']['idx'].numpy(), ref_top(losses.numpy(), K))
    parts = torch.randperm(997, generator=torch.Generator().manual_seed(1)).tensor_split([300, 310, 700])  # uneven, shuffled
    def collectors(): return [stream(probs, targs, losses, [41], idxs=p) for p in parts]
    for order in itertools.permutations(range(4)):
        cs = collectors()
        merged = cs[order[0]]
        for i in order[1:]: merged.merge(cs[i])
        assert_same(merged.compute(), whole)
    a, b, c, d = collectors()
    assert_same(a.merge(b).merge(c.merge(d)).compute(), whole)  # a tree of merges
    # the same measures named in another order merge list by list
    e, f = (stream(probs, targs, losses, [41], idxs=p, measures=m) for p, m in zip(parts[:2], (MEASURES, reversed(MEASURES))))
    g, h = (stream(probs, targs, losses, [41], idxs=p) for p in parts[2:])
    assert_same(e.merge(f).merge(g).merge(h).compute(), whole)
    one = stream(probs, targs, losses, [100])
    into_empty = StreamingStats(C, K).merge(one)
    assert_same(into_empty.compute(), whole)
    into_empty.update(probs[:5], targs[:5], losses[:5], torch.arange(2000, 2005))
    assert_same(one.compute(), whole)  # merging took copies: `one` is untouched by later updates

def test_unlabelled_stream_keeps_uncertainty_only():
    probs, _, _ = tied_data()
    res = stream(probs, None, None, [128]).compute()
    assert res['confusion'].sum() == 0 and len(res['top']['loss']['idx']) == 0
    want = ref_top(MEASURES['margin'](probs).numpy(), K)
    np.testing.assert_array_equal(res['top']['margin']['idx'].numpy(), want)
    assert (res['top']['margin']['targ'] == -1).all() and res['top']['margin']['loss'].isnan().all()

def test_reset():
    probs, targs, losses = tied_data()
    s = stream(probs, targs, losses, [200])
    s.reset()
    assert s.n == 0 and s.labelled is None
    s.update(probs[:5])  # unlabelled now: allowed after a reset
    assert s.compute()['n'] == 5

@pytest.mark.parametrize('args, match', [
    (lambda p, t, l: (p[:, :4],), r'shape \(batch size, 6\)'),
    (lambda p, t, l: (p[0],), r'shape \(batch size, 6\)'),
    (lambda p, t, l: (p.log(),), r'outside \[0, 1\].*not logits'),
    (lambda p, t, l: (p * 0.9,), 'must sum to 1.*off by 0.1'),
    (lambda p, t, l: (torch.where(torch.arange(10)[:, None] == 3, float('nan'), p),), '1 of 10 rows.*NaN'),
    (lambda p, t, l: ((p * 100).long(),), 'floating point'),
    (lambda p, t, l: (p, t + 6), r'targs must lie in \[0, 6\)'),
    (lambda p, t, l: (p, t.float()), 'integer class indices'),
    (lambda p, t, l: (p, t[:9]), r'targs must have shape \(10,\)'),
    (lambda p, t, l: (p, None, l), 'losses need targs'),
    (lambda p, t, l: (p, t, l.clone().index_fill_(0, torch.tensor([2, 4]), float('nan'))), '2 of the 10 losses are NaN'),
    (lambda p, t, l: (p, t, l[:, None]), r'losses must be floats of shape \(10,\)'),
    (lambda p, t, l: (p, t, l, torch.arange(10.)), 'idxs must be 10 integer'),
    (lambda p, t, l: (p, t, l, torch.arange(10) - 1), 'idxs must be item indices'),
    (lambda p, t, l: (p, t, l, None, torch.full((10,), 9)), r'decoded must lie in \[0, 6\)'),
])
def test_bad_batches(args, match):
    p, t, l = (x[:10] for x in tied_data())
    with pytest.raises(ValueError, match=match): StreamingStats(C).update(*args(p, t, l))

def test_bad_setups_and_merges():
    p, t, l = tied_data()
    with pytest.raises(ValueError, match='k must be'): StreamingStats(C, k=-1)
    with pytest.raises(ValueError, match='n_classes'): StreamingStats(0)
    with pytest.raises(ValueError, match="Unknown uncertainty measure.*'variance'"): StreamingStats(C, measures=('entropy', 'variance'))
    with pytest.raises(ValueError, match='Nothing was streamed'): StreamingStats(C).compute()
    s = StreamingStats(C).update(p[:10], t[:10], l[:10])
    with pytest.raises(ValueError, match='has no targets.*earlier ones had'): s.update(p[10:20])
    with pytest.raises(ValueError, match='has no losses'): s.update(p[10:20], t[10:20])
    with pytest.raises(ValueError, match='set up differently'): s.merge(StreamingStats(C, k=3))
    with pytest.raises(TypeError, match='merge a StreamingStats'): s.merge({'n': 3})
    # two collectors left to number their items from 0: the same index twice is caught, not silently merged
    a, b = StreamingStats(C).update(p[:50], t[:50], l[:50]), StreamingStats(C).update(p[50:100], t[50:100], l[50:100])
    with pytest.raises(ValueError, match='same item index was streamed twice'): a.merge(b)
    with pytest.raises(RuntimeError, match='torch.distributed to be initialized'): a.sync()

def test_the_same_index_twice_in_a_first_block(hold):
    "A collector's first block, whose candidates are taken alone (nothing kept to merge them with), is checked too"
    p, t, l = tied_data()
    with pytest.raises(ValueError, match='same item index was streamed twice'):
        StreamingStats(C, k=3).update(p[:60], t[:60], l[:60], idxs=[7] * 60).compute()

# --- on a fastai learner: equal to the in-memory interpretation
@pytest.fixture(scope='module')
def in_memory(digits_vision):
    return ClassificationInterpretation.from_learner(digits_vision)

def check_equal(st, ref, k):
    "Every view a streamed interpretation answers equals the in-memory one, exactly"
    for a, b in zip(st.top_losses(k), ref.top_losses(k)): assert torch.equal(a, b)
    for m in MEASURES:
        for a, b in zip(st.most_uncertain(k, m), ref.most_uncertain(k, m)): assert torch.equal(a, b), m
    for norm in (None, 'true', 'pred', 'all'): np.testing.assert_array_equal(st.confusion_matrix(norm), ref.confusion_matrix(norm))
    assert st.most_confused() == ref.most_confused()
    assert st.classification_report() == ref.classification_report()
    assert st.n == len(ref.probs) and st.accuracy() == int((ref.decoded == ref.targs).sum()) / len(ref.targs)
    check_calibration(st, ref)

def check_calibration(st, ref):
    "ECE, MCE and accuracy from the bins equal; Brier and NLL, per-item terms summed batch by batch, up to float64 rounding"
    got, want = st.calibration(), calibration_metrics(ref.probs, ref.targs)
    assert list(got) == list(want)
    for f in ('ece', 'mce', 'accuracy'): assert got[f] == want[f], f
    for f in ('brier', 'nll'): assert got[f] == pytest.approx(want[f], rel=1e-12), f

@pytest.mark.parametrize('bs', [64, 37, 1000])
def test_digits_equal_in_memory(digits_vision, in_memory, bs):
    learn = digits_vision
    st = StreamingInterpretation.from_learner(learn, dl=learn.dls.valid.new(bs=bs), k=K, progress=False)
    check_equal(st, in_memory, K)
    t, d = in_memory.targs.numpy(), in_memory.decoded.numpy()
    prec, rec, _, sup = skm.precision_recall_fscore_support(t, d, labels=range(10), zero_division=0)
    pc = st.per_class()
    np.testing.assert_array_equal(pc['support'], sup)
    np.testing.assert_allclose(pc['recall'], rec, rtol=1e-12); np.testing.assert_allclose(pc['precision'], prec, rtol=1e-12)
    np.testing.assert_array_equal(pc['predicted'], np.bincount(d, minlength=10))

def test_shuffled_dl_is_put_back_in_order(digits_vision):
    dl = digits_vision.dls.valid.new(shuffle=True, bs=50)
    ref = ClassificationInterpretation.from_learner(digits_vision, dl=dl)
    check_equal(StreamingInterpretation.from_learner(digits_vision, dl=dl, k=K, progress=False), ref, K)

def test_callback_during_validate_and_get_preds(digits_vision, in_memory):
    "Attached to a plain validation (reduced loss), the callback's losses equal get_preds(with_loss=True)'s bit for bit"
    cb = StreamingCallback(k=K)
    with digits_vision.no_bar(): digits_vision.validate(cbs=[cb])
    kept = cb.stats.compute()['top']['loss']
    vals, idxs = in_memory.top_losses(K)
    assert torch.equal(kept['score'], vals) and torch.equal(kept['idx'], idxs)
    assert torch.equal(kept['loss'], in_memory.losses[idxs])
    cb = StreamingCallback(k=K)  # or during get_preds, beside what it gathers
    with digits_vision.no_bar(): digits_vision.get_preds(cbs=[cb])
    kept = cb.stats.compute()['top']
    assert torch.equal(kept['loss']['idx'], idxs) and torch.equal(kept['margin']['idx'], in_memory.most_uncertain(K, 'margin')[1])
    with pytest.raises(ValueError, match='shuffled DataLoader'):
        with digits_vision.no_bar(): digits_vision.validate(dl=digits_vision.dls.valid.new(shuffle=True), cbs=[StreamingCallback()])

def test_from_learner_streaming_keyword(digits_vision, in_memory):
    st = ClassificationInterpretation.from_learner(digits_vision, streaming=True, k=K, progress=False)
    assert isinstance(st, StreamingInterpretation)
    check_equal(st, in_memory, K)
    with pytest.raises(ValueError, match='streaming= goes with neither tta= nor mc_dropout='):
        ClassificationInterpretation.from_learner(digits_vision, streaming=True, tta=True)

def test_views_that_need_every_item(digits_vision):
    st = StreamingInterpretation.from_learner(digits_vision, k=10, progress=False)
    for view, call in [('to_df', st.to_df), ('uncertainty', st.uncertainty), ('correct', st.correct),
                       ('most_correct', lambda: st.most_correct(3)), ('most_incorrect', lambda: st.most_incorrect(3)),
                       ('plot_most_incorrect', lambda: st.plot_most_incorrect(3)), ('__getitem__', lambda: st[[0, 1]])]:
        with pytest.raises(ValueError, match=f'{view} is not available from streamed statistics.*top 10.*in-memory'): call()
    with pytest.raises(ValueError, match=r'top_losses\(k=11\).*top 10 of 359.*k=11'): st.top_losses(11)
    with pytest.raises(ValueError, match=r'most_uncertain\(k=50\)'): st.most_uncertain(50, 'margin')
    with pytest.raises(ValueError, match='callable'): st.most_uncertain(5, lambda p: p.max(1).values)
    with pytest.raises(ValueError, match=r"cls=3.*one class"): st.most_uncertain(5, cls=3)
    with pytest.raises(ValueError, match="Measure 'variance' was not streamed"): st.plot_most_uncertain(5, 'variance')
    with pytest.raises(ValueError, match=r'top_losses\(k=11\)'): st.plot_top_losses(11)
    with pytest.raises(ValueError, match='largest=False'): st.top_losses(5, largest=False)
    with pytest.raises(ValueError, match='n_bins=15 while streaming.*into 10'): st.calibration(10)
    with pytest.raises(ValueError, match='n_bins=15 while streaming.*into 10'): st.plot_reliability(10)
    assert len(st.top_losses()[1]) == 10  # k=None: every kept item

def test_unlabelled_test_dl(digits_vision, digits_path):
    dl = digits_vision.dls.test_dl(sorted((digits_path/'valid').rglob('*.png'))[:70])
    ref = ClassificationInterpretation.from_learner(digits_vision, dl=dl)
    st = StreamingInterpretation.from_learner(digits_vision, dl=dl, k=K, progress=False)
    for m in MEASURES:
        for a, b in zip(st.most_uncertain(K, m), ref.most_uncertain(K, m)): assert torch.equal(a, b)
    np.testing.assert_array_equal(st.per_class()['predicted'], np.bincount(ref.decoded.numpy(), minlength=10))
    with pytest.raises(ValueError, match='unlabelled'): st.confusion_matrix()
    with pytest.raises(ValueError, match='unlabelled'): st.top_losses(3)
    with pytest.raises(ValueError, match='unlabelled'): st.calibration()
    with pytest.raises(ValueError, match='unlabelled'): st.plot_reliability()

def test_binary_one_output_sigmoid(digits_arrays):
    X, y = digits_arrays
    learn = fit_quietly(plain_learner(X, (y % 2).float()[:, None], nn.BCEWithLogitsLoss(), 1), 1)
    ref = ClassificationInterpretation.from_learner(learn)
    st = StreamingInterpretation.from_learner(learn, k=K, progress=False)
    for m in MEASURES:
        for a, b in zip(st.most_uncertain(K, m), ref.most_uncertain(K, m)): assert torch.equal(a, b), m
    np.testing.assert_array_equal(st.confusion_matrix(), ref.confusion_matrix())
    check_calibration(st, ref)
    assert st.vocab == [0, 1]
    # the in-memory losses come as (N, 1) here; the streamed ones are checked against BCE computed by hand
    raw = raw_outputs(learn, learn.dls.valid).view(-1)
    bce = F.binary_cross_entropy_with_logits(raw, (y[len(X) * 4 // 5:] % 2).float(), reduction='none')
    vals, idxs = st.top_losses(K)
    np.testing.assert_array_equal(idxs.numpy(), ref_top(bce.numpy(), K))
    torch.testing.assert_close(vals, bce[idxs])

@pytest.mark.parametrize('loss', [nn.CrossEntropyLoss, CrossEntropyLossFlat, FocalLossFlat,
                                  LabelSmoothingCrossEntropyFlat])
def test_a_plain_softmax_is_not_checked_twice_and_streams_as_in_memory(digits_arrays, monkeypatch, loss):
    """The registry's softmax, or the own softmax of fastai's flattened losses: the collector skips its checks, and the
    figures stay exact"""
    X, y = digits_arrays
    learn = fit_quietly(plain_learner(X, y, loss(), 10), 1)
    made, check = [], StreamingStats._check
    monkeypatch.setattr(StreamingStats, '_check', lambda self, *a: made.append(a[-1]) or check(self, *a))
    st = StreamingInterpretation.from_learner(learn, k=K, progress=False)
    assert made and all(made)  # every batch took the path without the second check
    ref = ClassificationInterpretation.from_learner(learn)
    for a, b in zip(st.top_losses(K), ref.top_losses(K)): assert torch.equal(a, b)
    for m in MEASURES:
        for a, b in zip(st.most_uncertain(K, m), ref.most_uncertain(K, m)): assert torch.equal(a, b), m
    np.testing.assert_array_equal(st.confusion_matrix(), ref.confusion_matrix())
    check_calibration(st, ref)

def test_a_registered_softmax_with_its_own_decodes_is_still_checked(digits_arrays):
    "A loss registered with the softmax and a decodes of its own: its classes are checked, one clear error"
    from fastinterp import register_activation
    class OffByOne(nn.CrossEntropyLoss): pass
    register_activation(OffByOne, 'softmax', decodes=lambda p, axis=1: p.argmax(axis) + 10, kind='multiclass')
    X, y = digits_arrays
    learn = plain_learner(X, y, OffByOne(), 10)
    with pytest.raises(ValueError, match=r'decoded must lie in \[0, 10\)'):
        StreamingInterpretation.from_learner(learn, k=K, progress=False)

def test_a_flattened_loss_with_an_activation_of_its_own_is_still_checked(digits_arrays):
    "A subclass of CrossEntropyLossFlat that overrides fastai's softmax: its probabilities are checked, one clear error"
    class Halved(CrossEntropyLossFlat):
        def activation(self, x): return F.softmax(x, dim=-1) / 2
    X, y = digits_arrays
    with pytest.raises(ValueError, match='Rows of probs must sum to 1'):
        StreamingInterpretation.from_learner(plain_learner(X, y, Halved(), 10), k=K, progress=False)

def test_regression_and_multilabel_are_refused(digits_arrays):
    X, y = digits_arrays
    with pytest.raises(ValueError, match='regression'):
        StreamingInterpretation.from_learner(plain_learner(X, y.float()[:, None], nn.MSELoss(), 1), progress=False)
    learn = plain_learner(X, torch.stack([y % 2 == 0, y >= 5], 1).float(), nn.BCEWithLogitsLoss(), 2)
    with pytest.raises(ValueError, match='single-label.*multi-label'): StreamingInterpretation.from_learner(learn, progress=False)

def pixels(fig):
    "The figure as drawn, RGBA; the figure is closed"
    fig.canvas.draw()
    a = np.asarray(fig.canvas.buffer_rgba()).copy()
    plt.close(fig)
    return a

def test_plots_match_in_memory(digits_vision, in_memory):
    "The same pictures: the kept items' grids, and the figures drawn from counts (confusion matrix, reliability diagram)"
    st = StreamingInterpretation.from_learner(digits_vision, dl=digits_vision.dls.valid.new(bs=37), k=K, progress=False)
    drawn = lambda plot: plot() or plt.gcf()  # a plot method draws one figure, and returns None
    for name, plot in [('top_losses', lambda i: i.plot_top_losses(9)),
                       ('uncertain', lambda i: i.plot_most_uncertain(6, 'margin')),
                       ('confusion', lambda i: i.plot_confusion_matrix()),
                       ('reliability', lambda i: i.plot_reliability()),
                       ('titled', lambda i: i.plot_reliability(title='Digits', figsize=(4, 5)))]:
        a = drawn(lambda: plot(st)); b = drawn(lambda: plot(in_memory))
        titles = lambda fig: [ax.get_title() for ax in fig.axes]
        assert titles(a) == titles(b), name
        np.testing.assert_array_equal(pixels(a), pixels(b), err_msg=name)

def test_progress_bar_shows_items_per_second(digits_vision, capsys):
    st = StreamingInterpretation.from_learner(digits_vision, dl=digits_vision.dls.valid.new(bs=32), k=5)
    assert 'items/s' in capsys.readouterr().out and st.items_per_s > 0
    StreamingInterpretation.from_learner(digits_vision, k=5, progress=False)
    assert capsys.readouterr().out == ''

# --- two real processes (gloo on 127.0.0.1): merged figures equal one process's
def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

@pytest.mark.parametrize('n, world', [(359, 2), (10, 3), (3, 8), (48, 4), (7, 7)])
def test_distributed_dl_items_traced_as_fastai_slices_them(n, world):
    "Each rank's data set indices are those fastai's DistributedDL.get_idxs hands it; the real ones cover every item once"
    from fastai.distributed import DistributedDL
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n)).tolist()  # the fixed order get_preds gives a DataLoader
    dl = FaDataLoader(list(range(n)), bs=4, get_idxs=_ConstantFunc(order))
    # one process is enough for fastai's broadcast of the order from rank 0: every rank's slice is then computed here
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{free_port()}', rank=0, world_size=1)
    try:
        real_items = []
        for rank in range(world):
            ddl = DistributedDL(dl, rank, world)
            idxs, real = _dataset_idxs(ddl)
            with cpu_broadcast(): assert idxs.tolist() == ddl.get_idxs(), rank  # fastai's own broadcast needs CUDA
            real_items += idxs[real].tolist()
        assert sorted(real_items) == list(range(n))
    finally: dist.destroy_process_group()

def run_rank(rank, world, port, out, digits_path, weights):
    "One process: a half of the tied data synced by hand, then the digits learner under fastai's distributed context"
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                      OMP_NUM_THREADS='1')
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        probs, targs, losses = tied_data()
        # rank 1 names the measures in another order: the lists are gathered one by one, in the same order on every rank
        measures = tuple(MEASURES)[::-1] if rank else tuple(MEASURES)
        res = {'stats': stream(probs, targs, losses, [37], idxs=torch.arange(rank, 997, world), measures=measures).sync().compute(),
               # a rank that saw nothing still takes part, and ends with the other's figures
               'one_rank': (stream(probs, targs, losses, [100]) if rank == 0 else StreamingStats(C, K)).sync().compute()}
        import fastai.distributed  # Learner.distrib_ctx, as a user of fastai's distributed training imports it
        learn = digits_learner(digits_path)
        learn.model.load_state_dict(torch.load(weights))
        # on a CPU: SyncBatchNorm is GPU-only, and accelerate must be told (cpu=True) or it leaves the model unwrapped
        with learn.distrib_ctx(sync_bn=False, cpu=True):
            st = StreamingInterpretation.from_learner(learn, k=K, progress=False)
        views = lambda st: {'n': st.n, 'top_losses': st.top_losses(K), 'confusion': st.confusion_matrix(), 'calibration': st.calibration(),
                            **{m: st.most_uncertain(K, m) for m in MEASURES}}
        res['fastai'] = views(st)
        # or a DistributedDL given directly, outside the context: each process streams its slice, then they merge
        from fastai.distributed import DistributedDL
        res['distributed_dl'] = views(StreamingInterpretation.from_learner(learn, dl=DistributedDL(learn.dls.valid), k=K, progress=False))
        torch.save(res, os.path.join(out, f'rank{rank}.pt'))
    finally: dist.destroy_process_group()

@pytest.fixture(scope='module')
def two_ranks(tmp_path_factory, digits_vision, digits_path):
    out = tmp_path_factory.mktemp('ranks')
    torch.save(digits_vision.model.state_dict(), out/'weights.pt')
    ctx = mp.start_processes(run_rank, args=(2, free_port(), str(out), str(digits_path), str(out/'weights.pt')),
                             nprocs=2, join=False, start_method='spawn')
    deadline = time.monotonic() + 150
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes: p.kill()
            pytest.fail('the two processes did not finish within 150 s')
    return [torch.load(out/f'rank{r}.pt', weights_only=False) for r in range(2)]

def test_two_gloo_processes_sync_to_the_single_process_figures(two_ranks):
    probs, targs, losses = tied_data()
    whole = stream(probs, targs, losses, [100]).compute()
    for r in two_ranks:
        assert_same(r['stats'], whole)
        assert_same(r['one_rank'], whole)

@pytest.mark.parametrize('how', ['fastai', 'distributed_dl'])
def test_fastai_distributed_context_gives_the_single_process_figures(two_ranks, in_memory, how):
    for r in two_ranks:
        got = r[how]
        assert got['n'] == len(in_memory.probs)  # DistributedDL's padding duplicates were dropped
        for a, b in zip(got['top_losses'], in_memory.top_losses(K)): assert torch.equal(a, b)
        for m in MEASURES:
            for a, b in zip(got[m], in_memory.most_uncertain(K, m)): assert torch.equal(a, b), m
        np.testing.assert_array_equal(got['confusion'], in_memory.confusion_matrix())
        assert got['calibration'] == pytest.approx(in_memory.calibration(), rel=1e-12)
