"From what is wrong to what to do, through the interpretations: label issues, out of fold, abstention, intervals"
import re
import numpy as np, pandas as pd, pytest, torch
import matplotlib.pyplot as plt
from scipy.stats import binomtest
from fastai.vision.all import (CategoryBlock, DataBlock, ImageBlock, IndexSplitter, Learner, parent_label,
                               ClassificationInterpretation)
import torch.nn as nn

from fastinterp.data import digits_cnn, digits_folder, digits_learner
from fastinterp.folds import fold_indices, out_of_fold
from conftest import fit_quietly

cleanlab = pytest.importorskip('cleanlab')
from cleanlab.count import num_label_issues
from cleanlab.rank import get_label_quality_scores

@pytest.fixture(scope='module')
def flipped_path(tmp_path_factory):
    return digits_folder(tmp_path_factory.mktemp('flipped'), flip=0.03)

@pytest.fixture(scope='module')
def flipped_interp(flipped_path):
    "The validation set of a digits CNN trained on the digits with 3% of their labels flipped"
    learn = fit_quietly(digits_learner(flipped_path), 2)
    return ClassificationInterpretation.from_learner(learn, progress=False)

# --- label issues, against cleanlab on the same probabilities
@pytest.mark.parametrize('method', ['self_confidence', 'normalized_margin', 'confidence_weighted_entropy'])
def test_label_issue_scores_are_cleanlabs(flipped_interp, method):
    it = flipped_interp
    p, y = it.probs.double().numpy(), it.targs.numpy()
    p = p / p.sum(1, keepdims=True)  # cleanlab checks the row sums in float64
    ref = 1 - get_label_quality_scores(y, p, method=method)
    scores, idxs = it.label_issues(k=len(y), method=method)
    np.testing.assert_allclose(scores.numpy(), ref[idxs.numpy()], rtol=1e-5, atol=1e-6)
    order = np.lexsort((np.arange(len(ref)), -ref))  # highest first, ties to the lower index
    assert (np.sort(ref)[::-1][:20] - scores.numpy()[:20] < 1e-6).all() and set(idxs[:5].tolist()) <= set(order[:8])

def test_the_estimated_count_is_cleanlabs_and_the_list_finds_the_flipped(flipped_interp, flipped_path):
    it = flipped_interp
    p, y = it.probs.double().numpy(), it.targs.numpy()
    est = it.estimate_label_errors()
    assert est.count == num_label_issues(y, p / p.sum(1, keepdims=True), estimation_method='off_diagonal_calibrated')
    assert est.count == round(est.pairs['count'].sum()) and (est.pairs['given'] != est.pairs['suggested']).all()
    df = it.label_issues_df()
    assert len(df) == est.count == len(it.label_issues()[1])
    for method in ('self_confidence', 'normalized_margin'):  # the list is the ranking's head: reading on only adds
        short, longer = it.label_issues(method=method)[1], it.label_issues(est.count + 20, method)[1]
        assert short.tolist() == longer[:est.count].tolist()
    pd.testing.assert_frame_equal(df, it.label_issues_df(est.count))
    flipped = {str(flipped_path/f) for f in pd.read_csv(flipped_path/'flipped.csv')['file']}
    in_valid = {f for f in flipped if '/valid/' in f}
    found = flipped & set(df['item'])
    assert len(found) >= 0.7 * len(in_valid) and len(found) >= 0.6 * len(df)  # measured: 10 of 12, 10 of 11
    # each row as the probabilities say: the given label is the folder's, the suggested the likeliest other class
    for r in df.itertuples():
        assert r.given == r.item.split('/')[-2] and r.suggested != r.given
        row = it.probs[r.idx]
        assert r.p_given == pytest.approx(float(row[it.vocab.index(r.given)]))
        assert r.p_suggested == pytest.approx(float(row[[c for c in range(10) if c != it.targs[r.idx]]].max()))

def test_plot_label_issues_titles_say_given_with_the_file(flipped_interp):
    plt.close('all')
    flipped_interp.plot_label_issues(4)
    assert len(plt.get_fignums()) == 1
    titles = [a.get_title() for a in plt.gcf().axes if a.get_title()]
    assert len(titles) == 4
    for t in titles:
        assert re.match(r'given \d: [\d.<>]+ · suggested \d: [\d.<>]+\n\d/\d{4}\.png$', t), t
        assert 'true' not in t
    plt.close('all')

def test_top_loss_titles_call_the_label_given(flipped_interp):
    t = flipped_interp._title(int(flipped_interp.top_losses(1)[1][0]), loss=True)
    assert ' · given ' in t and 'true' not in t

def test_label_issues_refuse_what_they_cannot_do(flipped_interp, digits_vision):
    learn = digits_vision
    files = sorted(learn.dls.valid.items)[:40]
    unlabelled = ClassificationInterpretation.from_learner(learn, dl=learn.dls.test_dl(files), progress=False)
    with pytest.raises(ValueError, match='needs targets'): unlabelled.label_issues()
    st = ClassificationInterpretation.from_learner(learn, streaming=True, progress=False)
    with pytest.raises(ValueError, match='not available from streamed statistics'): st.label_issues()
    with pytest.raises(ValueError, match='method'): flipped_interp.label_issues(method='loss')
    # a class no item is labelled with has no threshold: one clear error naming it
    few = ClassificationInterpretation.from_learner(learn, dl=learn.dls.test_dl(
        [f for f in learn.dls.valid.items if f.parent.name != '7'], with_labels=True), progress=False)
    with pytest.raises(ValueError, match=r'7'): few.estimate_label_errors()

# --- out of fold
def _make(log, vocab=None):
    def make_learner(train, valid):
        log.append((list(train), list(valid)))
        block = DataBlock((ImageBlock, CategoryBlock(vocab=vocab or [str(c) for c in range(10)])), get_y=parent_label,
                          splitter=IndexSplitter(range(len(train), len(train) + len(valid))))
        dls = block.dataloaders(list(train) + list(valid), bs=32, num_workers=0)
        return Learner(dls, digits_cnn(), loss_func=nn.CrossEntropyLoss())
    return make_learner

def test_out_of_fold_predicts_every_item_once_by_a_model_that_did_not_see_it(digits_path):
    files = sorted(digits_path.glob('*/*/*.png'))[::6]  # 300 items of both sets
    log, models = [], []
    def fit(learn):
        with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, 1e-2)
        models.append(learn)
    it = out_of_fold(_make(log), files, n_folds=3, fit=fit, progress=False)
    assert len(it.probs) == len(files) and it.n_folds == 3
    assert it.fold.tolist() == fold_indices(len(files), 3).tolist()
    assert [str(f) for f in it.items(range(len(files)))] == [str(f) for f in files]  # the order of `items`
    assert it.targs.tolist() == [int(f.parent.name) for f in files]
    for f, ((train, valid), learn) in enumerate(zip(log, models)):
        held = [files[i] for i in np.flatnonzero(it.fold.numpy() == f)]
        assert valid == held and not set(map(str, train)) & set(map(str, valid))
        assert len(train) + len(valid) == len(files)
        # the held-out items' probabilities are this fold's model's, by hand
        learn.model.eval()
        x = torch.cat([b[0] for b in learn.dls.valid])
        with torch.no_grad(): ref = torch.softmax(learn.model(x).float(), 1)
        np.testing.assert_allclose(it.probs[it.fold == f].numpy(), ref.numpy(), rtol=1e-4, atol=1e-6)
    assert 'out of fold: 3 models' in repr(it)

def test_out_of_fold_refuses_bad_folds_and_learners(digits_path):
    files = sorted(digits_path.glob('*/*/*.png'))[::60]
    for bad in (1, 0, len(files) + 1):
        with pytest.raises(ValueError, match='n_folds must be between 2'): out_of_fold(_make([]), files, bad)
    with pytest.raises(TypeError, match='whole number'): out_of_fold(_make([]), files, 2.5)
    with pytest.raises(TypeError, match='make_learner'): out_of_fold(None, files, 2)
    def wrong_valid(train, valid): return _make([])(valid, train)  # validates on the training items
    with pytest.raises(ValueError, match='must validate on valid_items'):
        out_of_fold(wrong_valid, files, 3, fit=lambda learn: None, progress=False)

# --- selective prediction
def _rc_reference(u, right):
    "Per distinct uncertainty, ascending: (threshold, n, accuracy), by numpy"
    u, right = np.asarray(u, dtype=np.float64), np.asarray(right, dtype=np.float64)
    ts = np.unique(u)
    return [(t, int((u <= t).sum()), right[u <= t].mean()) for t in ts]

@pytest.mark.parametrize('measure', ['least_confidence', 'entropy', 'margin'])
def test_risk_coverage_is_the_threshold_sweep(flipped_interp, measure):
    it = flipped_interp
    u, right = it.uncertainty(measure).numpy(), it.correct().numpy()
    rc = it.risk_coverage(measure)
    ref = _rc_reference(u, right)
    assert len(rc) == len(ref)
    np.testing.assert_allclose(rc['threshold'], [r[0] for r in ref])
    assert rc['n'].tolist() == [r[1] for r in ref]
    np.testing.assert_allclose(rc['accuracy'], [r[2] for r in ref])
    np.testing.assert_allclose(rc['risk'], 1 - rc['accuracy'])
    # AURC: the risk of each item's selection (ties together), averaged over items
    n_at = np.array([r[1] for r in ref]); sizes = np.diff(np.r_[0, n_at])
    assert it.aurc(measure) == pytest.approx(float((sizes * (1 - np.array([r[2] for r in ref]))).sum() / len(u)))
    for target in (0.9, 0.95, 0.99):
        sel, ok = it.coverage_at(target, measure), [r for r in ref if r[2] >= target]
        if not ok: assert sel.threshold is None and sel.coverage == 0
        else: assert sel.threshold == pytest.approx(ok[-1][0]) and sel.n == max(r[1] for r in ok)

def test_streamed_risk_coverage_counts_exactly_at_its_bin_edges(digits_vision):
    learn = digits_vision
    im = ClassificationInterpretation.from_learner(learn, progress=False)
    st = ClassificationInterpretation.from_learner(learn, streaming=True, progress=False)
    u, right = im.uncertainty('least_confidence').numpy().astype(np.float64), im.correct().numpy()
    rc = st.risk_coverage()
    for t, n, acc in rc[['threshold', 'n', 'accuracy']].itertuples(index=False):
        assert n == int((u <= t).sum()) and acc == pytest.approx(right[u <= t].mean())
    assert st.aurc() == pytest.approx(im.aurc(), abs=2e-3)
    with pytest.raises(ValueError, match="least confidence"): st.risk_coverage('entropy')

def test_plot_risk_coverage_one_figure(flipped_interp):
    plt.close('all')
    flipped_interp.plot_risk_coverage()
    assert len(plt.get_fignums()) == 1
    text = ' '.join(t.get_text() for t in plt.gcf().axes[0].get_legend().get_texts())
    assert '99.00% accuracy' in text and '95.00% accuracy' in text
    plt.close('all')

@pytest.mark.parametrize('bad', [1.5, 0, -0.1])
def test_coverage_at_refuses_an_accuracy_that_is_not_a_share(flipped_interp, bad):
    with pytest.raises(ValueError, match='accuracy'): flipped_interp.coverage_at(accuracy=bad)

# --- intervals
def test_accuracy_and_per_class_intervals_are_wilsons(flipped_interp):
    it = flipped_interp
    k, n = int(it.correct().sum()), len(it.probs)
    a = it.accuracy(ci=0.9)
    ref = binomtest(k, n).proportion_ci(confidence_level=0.9, method='wilson')
    assert float(a) == k / n and (a.lo, a.hi) == pytest.approx((ref.low, ref.high))
    pc = it.per_class(ci=0.95)
    for r in pc.itertuples():
        ref = binomtest(int(r.correct), int(r.support)).proportion_ci(method='wilson')
        assert (r.recall_lo, r.recall_hi) == pytest.approx((ref.low, ref.high))
        ref = binomtest(int(r.correct), int(r.predicted)).proportion_ci(method='wilson')
        assert (r.precision_lo, r.precision_hi) == pytest.approx((ref.low, ref.high))
    rep = it.classification_report(ci=0.95)
    r = pc.iloc[0]
    ref = binomtest(int(r.correct), int(r.support)).proportion_ci(method='wilson')
    assert f"{r.recall:.3f} ({ref.low:.3f} to {ref.high:.3f})" in rep and 'Wilson' in rep

def test_calibration_intervals(flipped_interp, digits_vision):
    it = flipped_interp
    plain, m = it.calibration(), it.calibration(ci=0.95, n_resamples=300)
    for name in ('ece', 'mce', 'brier', 'nll', 'accuracy'):
        assert float(m[name]) == pytest.approx(plain[name]) and m[name].lo <= m[name] <= m[name].hi
    assert m == it.calibration(ci=0.95, n_resamples=300)  # seeded
    st = ClassificationInterpretation.from_learner(digits_vision, streaming=True, progress=False)
    with pytest.raises(ValueError, match='bootstrap'): st.calibration(ci=0.95)
    assert st.accuracy(ci=0.95).lo < st.accuracy()

@pytest.mark.parametrize('bad', [0, 1, 1.5, 95, -0.1, True])
def test_every_ci_refuses_a_level_outside_0_1(flipped_interp, bad):
    for view in (flipped_interp.accuracy, flipped_interp.classification_report, flipped_interp.per_class,
                 flipped_interp.calibration):
        with pytest.raises((ValueError, TypeError), match='ci'): view(ci=bad)
