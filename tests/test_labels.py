"Label errors: scores, thresholds, confident joint and issues against cleanlab and against numpy references by hand"
import math, warnings
import numpy as np, pytest, torch
import cleanlab.count, cleanlab.filter, cleanlab.rank

from fastinterp.labels import (LABEL_METHODS, label_scores, class_thresholds, confident_joint, LabelErrorEstimate,
                               estimate_label_errors, suggested_labels, find_label_issues, _round_rows)

SEEDS = range(4)
CLASSES = (2, 3, 10)

# --- data
def random_case(seed, C, N=400):
    """Float64 probabilities and given labels right ~75% of the time. A quarter of the rows are coarse (multiples of 1/6
    renormalized: ties, zeros, one-hot rows), a tenth one-hot (half on the given label), every class given"""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1, (N, C)) * rng.uniform(0.5, 4, (N, 1))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    q = N // 4
    p[:q] = np.round(p[:q] * 6)
    p[:q][p[:q].sum(1) == 0, 0] = 1
    p[:q] /= p[:q].sum(1, keepdims=True)
    y = np.where(rng.random(N) < 0.75, p.argmax(1), rng.integers(0, C, N))
    oh = rng.choice(N, N // 10, replace=False)
    p[oh] = 0
    p[oh, np.where(rng.random(len(oh)) < 0.5, y[oh], rng.integers(0, C, len(oh)))] = 1
    y[:C] = np.arange(C)
    return p, y

def flipped_case(seed, C, N=3000, sep=4.0, frac=0.03):
    "Softmax of Gaussian logits around the true class; an exact 3% of the labels flipped to another class at random"
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, N)
    z = rng.normal(0, 1, (N, C))
    z[np.arange(N), y] += sep
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    flipped = rng.choice(N, int(round(frac * N)), replace=False)
    given = y.copy()
    given[flipped] = (y[flipped] + rng.integers(1, C, len(flipped))) % C
    return p, given, np.sort(flipped)

CASES = [(C, seed) for C in CLASSES for seed in SEEDS]

# --- references written from the formulas (cleanlab.rank, cleanlab.count; Northcutt et al. 2021), item by item
def ref_scores(p, y, method):
    out = []
    for row, l in zip(p, y):
        pl = row[l]
        if method == 'self_confidence': quality = pl
        elif method == 'normalized_margin': quality = (pl - max(row[c] for c in range(len(row)) if c != l) + 1) / 2
        else:
            H = -sum(v * math.log(v) for v in row if v > 0) / math.log(len(row))
            q = H / max(pl, 1e-6)
            quality = math.log(q + 1) / max(q, 1e-6)
        out.append(1 - quality)
    return np.array(out)

def ref_thresholds(p, y): return np.array([p[y == c, c].mean() for c in range(p.shape[1])])

def ref_joint(p, y, calibrate=True):
    "The paper's confident joint with cleanlab's details, and cleanlab's rounding with ties to the lower class"
    C = p.shape[1]
    thr = np.maximum(ref_thresholds(p, y), 2e-6)
    cj = np.zeros((C, C), dtype=np.int64)
    for row, l in zip(p, y):
        reached = [j for j in range(C) if row[j] >= thr[j] - 1e-6]
        if reached: cj[l, max(reached, key=lambda j: (row[j], -j))] += 1
    for c in range(C): cj[c, c] = max(cj[c, c], 1)
    if not calibrate: return cj
    n = np.bincount(y, minlength=C)
    F = cj / cj.sum(1, keepdims=True) * n[:, None]
    F = np.round(F / F.sum() * n.sum() * 1e6) / 1e6  # ties exact, whatever the last bits of the sums
    out = np.floor(F)
    for r in range(C):  # the leftover items one each to the largest fractional parts, ties to the lower class
        frac = np.round((F[r] - out[r]) * 1e6)
        for j in sorted(range(C), key=lambda j: (-frac[j], j))[:int(round(F[r].sum() - out[r].sum()))]: out[r, j] += 1
    return out

def reaches_unreached_argmax(p, y):
    "Rows where cleanlab's confident joint and the paper's differ: two or more thresholds reached, not the argmax's"
    thr = np.maximum(ref_thresholds(p, y), 2e-6)
    reached = p >= thr - 1e-6
    return int(((reached.sum(1) > 1) & ~reached[np.arange(len(p)), p.argmax(1)]).sum())

def calibrated_floats(cj, y):
    "cleanlab's calibration of the counts `cj` before its rounding"
    n = np.bincount(y, minlength=len(cj))
    F = cj / cj.sum(1, keepdims=True) * n[:, None]
    return F / F.sum() * n.sum()

def tie_groups(F):
    "Per row, the groups of cells with the same fractional part: which of them gets a leftover item is a matter of ties"
    frac = np.round(F % 1, 6) % 1
    return [[frac[r] == u for u in np.unique(frac[r])] for r in range(len(F))]

def assert_equal_up_to_ties(ours, theirs, F):
    "Equal cell by cell except for how the leftover items of a row are spread over cells tied for them"
    for r, groups in enumerate(tie_groups(F)):
        for g in groups: assert ours[r][g].sum() == theirs[r][g].sum(), (r, ours[r], theirs[r])

def diagonal_ties(F):
    "Rows whose diagonal cell is tied with another for a leftover item: there the count depends on the tie order"
    frac = np.round(F % 1, 6) % 1
    return sum(int((frac[r] == frac[r, r]).sum() > 1) for r in range(len(F)))

# --- scores
@pytest.mark.parametrize('method', LABEL_METHODS)
@pytest.mark.parametrize('C,seed', CASES)
def test_scores_are_one_minus_cleanlabs_label_quality(C, seed, method):
    p, y = random_case(seed, C)
    s = label_scores(p, y, method)
    assert s.dtype == torch.float64 and s.shape == (len(y),)
    expected = 1 - cleanlab.rank.get_label_quality_scores(y, p, method=method, adjust_pred_probs=False)
    np.testing.assert_allclose(s.numpy(), expected, rtol=0, atol=1e-12)
    assert 0 <= s.min() and s.max() <= 1

@pytest.mark.parametrize('method', LABEL_METHODS)
@pytest.mark.parametrize('C,seed', CASES)
def test_scores_match_the_formulas_item_by_item(C, seed, method):
    p, y = random_case(seed, C)
    np.testing.assert_allclose(label_scores(torch.tensor(p), torch.tensor(y), method).numpy(), ref_scores(p, y, method),
                               rtol=0, atol=1e-12)

def test_scores_by_hand():
    p = torch.tensor([[0.5, 0.4, 0.1], [0.2, 0.2, 0.6], [1., 0., 0.], [0., 1., 0.]], dtype=torch.float64)
    y = [2, 1, 0, 0]
    np.testing.assert_allclose(label_scores(p, y), [0.9, 0.8, 0., 1.])
    np.testing.assert_allclose(label_scores(p, y, 'normalized_margin'), [0.7, 0.7, 0., 1.])  # (1 - p_l + other) / 2
    # cleanlab's floors, kept: a row one-hot on its given label has entropy 0, q = 0 and a quality of log(1) / 1e-6
    H = -(0.5 * math.log(0.5) + 0.4 * math.log(0.4) + 0.1 * math.log(0.1)) / math.log(3)
    np.testing.assert_allclose(label_scores(p, y, 'confidence_weighted_entropy')[[0, 2, 3]],
                               [1 - math.log(H / 0.1 + 1) / (H / 0.1), 1., 1.])

def test_float32_probabilities_score_as_cleanlab_does():
    p, y = random_case(0, 3)
    p32 = torch.tensor(p, dtype=torch.float32)
    p32 /= p32.sum(1, keepdim=True)
    for m in LABEL_METHODS:
        expected = 1 - cleanlab.rank.get_label_quality_scores(y, p32.numpy(), method=m)
        np.testing.assert_allclose(label_scores(p32, y, m).numpy(), expected, rtol=0, atol=1e-6)

# --- thresholds and the confident joint
@pytest.mark.parametrize('C,seed', CASES)
def test_class_thresholds(C, seed):
    p, y = random_case(seed, C)
    t = class_thresholds(p, y)
    assert t.dtype == torch.float64 and t.shape == (C,)
    np.testing.assert_allclose(t.numpy(), ref_thresholds(p, y), rtol=1e-12)
    # cleanlab floors a threshold at 2e-6, as confident_joint does
    np.testing.assert_allclose(np.maximum(t.numpy(), 2e-6), cleanlab.count.get_confident_thresholds(y, p), rtol=1e-12)

@pytest.mark.parametrize('C,seed', CASES)
def test_confident_joint_uncalibrated_is_cleanlabs(C, seed):
    p, y = random_case(seed, C)
    cj = confident_joint(p, y, calibrate=False)
    assert cj.dtype == torch.int64 and cj.shape == (C, C)
    np.testing.assert_array_equal(cj.numpy(), ref_joint(p, y, calibrate=False))
    assert reaches_unreached_argmax(p, y) == 0  # where cleanlab departs from the paper: not in these data
    np.testing.assert_array_equal(cj.numpy(), cleanlab.count.compute_confident_joint(y, p, calibrate=False))

@pytest.mark.parametrize('C,seed', CASES)
def test_confident_joint_calibrated_is_cleanlabs_up_to_ties(C, seed):
    p, y = random_case(seed, C)
    cj = confident_joint(p, y)
    assert cj.dtype == torch.float64 and cj.shape == (C, C)
    np.testing.assert_array_equal(cj.numpy(), ref_joint(p, y))
    np.testing.assert_array_equal(cj.sum(1).numpy(), np.bincount(y, minlength=C))  # whole items, each row its label's
    theirs = cleanlab.count.compute_confident_joint(y, p)
    F = calibrated_floats(cleanlab.count.compute_confident_joint(y, p, calibrate=False), y)
    assert_equal_up_to_ties(cj.numpy(), theirs, F)
    assert np.abs(cj.numpy() - theirs).max() <= 1

def test_confident_joint_takes_the_most_probable_class_reached_as_the_paper():
    "Given 1 and 2, the last items reach the thresholds of 1 and 2 (0.2 each), not of 0 (0.9): cleanlab takes 0"
    p = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.6, 0.2, 0.2], [0.6, 0.2, 0.2]])
    y = np.array([0, 0, 1, 2])
    ours = [[2, 0, 0], [0, 1, 0], [0, 1, 1]]  # the tie of 1 and 2 goes to 1; class 2 keeps its one diagonal item
    np.testing.assert_array_equal(confident_joint(p, y, calibrate=False).numpy(), ours)
    assert reaches_unreached_argmax(p, y) == 2
    np.testing.assert_array_equal(cleanlab.count.compute_confident_joint(y, p, calibrate=False),
                                  [[2, 0, 0], [1, 1, 0], [1, 0, 1]])

def test_confident_joint_reaching_within_cleanlabs_fuzz():
    "A probability a hair under its class's mean still reaches it (1e-6 slack); one that reaches nothing counts nowhere"
    p = np.array([[0.7, 0.3], [0.7 - 1e-7, 0.3 + 1e-7], [0.6, 0.4], [0.1, 0.9], [0.3, 0.7], [0.5, 0.5]])
    y = np.array([0, 0, 0, 1, 1, 1])
    t = class_thresholds(p, y).numpy()  # 0.6667 and 0.7
    cj = confident_joint(p, y, calibrate=False).numpy()
    np.testing.assert_array_equal(cj, cleanlab.count.compute_confident_joint(y, p, calibrate=False))
    assert cj[0, 0] == 2 and cj.sum() == 4 and t[1] == pytest.approx(0.7)  # [0.6, 0.4] and [0.5, 0.5] reach nothing

@pytest.mark.parametrize('rows,expected', [
    ([[25.5, 1.5]], [[26, 1]]),                     # one item left over, two cells tied for it: the lower class's
    ([[9.48, 109.04, 9.48]], [[10, 109, 9]]),
    ([[0.3, 0.3, 0.4]], [[0, 0, 1]]),               # the largest fractional part first
    ([[1.4999999999999998, 2.5]], [[2, 2]]),        # a tie off by the last bit of a sum is a tie
    ([[2.9999999999999996, 1.0000000000000004]], [[3, 1]]),
])
def test_rounding_keeps_row_totals_ties_to_the_lower_class(rows, expected):
    F = torch.tensor(rows, dtype=torch.float64)
    F = torch.cat([F, torch.zeros(len(F[0]) - 1, len(F[0]), dtype=torch.float64)])  # square: one row of interest
    np.testing.assert_array_equal(_round_rows(F)[0].numpy(), expected[0])

# --- the estimate
@pytest.mark.parametrize('C,seed', CASES)
def test_estimate_is_cleanlabs_num_label_issues_off_diagonal_calibrated(C, seed):
    p, y = random_case(seed, C)
    e = estimate_label_errors(p, y)
    assert isinstance(e, LabelErrorEstimate) and isinstance(e.count, int)
    assert (e.joint.diagonal() == 0).all() and e.count == e.joint.sum()
    off = ref_joint(p, y)
    np.fill_diagonal(off, 0)
    np.testing.assert_array_equal(e.joint.numpy(), off)
    theirs = cleanlab.count.num_label_issues(y, p, estimation_method='off_diagonal_calibrated')
    ties = diagonal_ties(calibrated_floats(cleanlab.count.compute_confident_joint(y, p, calibrate=False), y))
    assert abs(e.count - theirs) <= ties  # equal, unless a diagonal cell is tied with another for a leftover item

@pytest.mark.parametrize('C', CLASSES)
def test_estimate_on_flipped_labels_is_cleanlabs(C):
    p, y, flipped = flipped_case(0, C)
    e = estimate_label_errors(p, y)
    ties = diagonal_ties(calibrated_floats(cleanlab.count.compute_confident_joint(y, p, calibrate=False), y))
    theirs = cleanlab.count.num_label_issues(y, p, estimation_method='off_diagonal_calibrated')
    assert ties <= 1 and abs(e.count - theirs) <= ties
    assert 0.8 * len(flipped) <= e.count <= 1.3 * len(flipped)

# --- suggested labels
@pytest.mark.parametrize('C,seed', CASES)
def test_suggested_labels_against_a_loop(C, seed):
    p, y = random_case(seed, C)
    expected = []
    for row, l in zip(p, y):
        others = [c for c in range(C) if c != l]
        expected.append(others[int(np.argmax(row[others]))])  # np.argmax: the first of equals, the lower class
    s = suggested_labels(p, y)
    assert s.dtype == torch.int64
    np.testing.assert_array_equal(s.numpy(), expected)
    assert (s != torch.tensor(y)).all()

def test_suggested_labels_ties_to_the_lower_class():
    p = torch.tensor([[0.2, 0.4, 0.4], [0.5, 0.25, 0.25], [1/3, 1/3, 1/3]])
    assert suggested_labels(p, [0, 0, 1]).tolist() == [1, 1, 0]

# --- label issues
def precision_recall(idxs, flipped):
    tp = len(np.intersect1d(idxs, flipped))
    return tp / max(len(idxs), 1), tp / len(flipped)

# measured over 20 seeds: precision at least 0.91 (C=2), 0.87 (3), 0.82 (10); recall 0.90, 0.87, 0.78
BOUNDS = {2: 0.85, 3: 0.8, 10: 0.7}

@pytest.mark.parametrize('method', LABEL_METHODS)
@pytest.mark.parametrize('C,seed', CASES)
def test_find_label_issues_finds_the_flipped_labels(C, seed, method):
    p, y, flipped = flipped_case(seed, C)
    scores, idxs = find_label_issues(p, y, method)
    prec, rec = precision_recall(idxs.numpy(), flipped)
    assert prec >= BOUNDS[C] and rec >= BOUNDS[C], (prec, rec)
    assert len(idxs) == estimate_label_errors(p, y).count == len(set(idxs.tolist()))
    np.testing.assert_array_equal(scores.numpy(), label_scores(p, y, method).numpy()[idxs.numpy()])

@pytest.mark.parametrize('method', LABEL_METHODS)
@pytest.mark.parametrize('C,seed', CASES)
def test_find_label_issues_is_the_head_of_the_ranking(C, seed, method):
    "The estimated number of items, highest score first, ties to the lower index: what label_issues(k) lists, cut"
    p, y = random_case(seed, C)  # coarse rows: many equal scores
    s = ref_scores(p, y, method)
    count = int(ref_joint(p, y).sum() - np.trace(ref_joint(p, y)))
    scores, idxs = find_label_issues(p, y, method)
    assert idxs.tolist() == sorted(range(len(y)), key=lambda i: (-s[i], i))[:count]
    np.testing.assert_allclose(scores.numpy(), s[idxs.numpy()], rtol=0, atol=1e-12)

@pytest.mark.parametrize('method', ['self_confidence', 'normalized_margin'])
@pytest.mark.parametrize('C', CLASSES)
def test_find_label_issues_is_cleanlabs_low_score_filter(C, method):
    """cleanlab's filter_by='low_self_confidence' ('low_normalized_margin') cuts the same ranking at its uncalibrated
    count, never above the calibrated one: its items are the head of ours"""
    for seed in range(3):
        p, y, _ = flipped_case(seed, C)  # continuous scores: no ties for numpy's unstable argsort to order otherwise
        _, idxs = find_label_issues(p, y, method)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            theirs = np.nonzero(cleanlab.filter.find_label_issues(y, p, filter_by=f'low_{method}', n_jobs=1))[0]
            calibrated = cleanlab.count.num_label_issues(y, p, estimation_method='off_diagonal_calibrated')
        assert len(idxs) == calibrated >= len(theirs) > 0
        assert set(idxs[:len(theirs)].tolist()) == set(theirs.tolist())

def f1(idxs, flipped):
    prec, rec = precision_recall(idxs, flipped)
    return 2 * prec * rec / (prec + rec) if prec + rec else 0.

@pytest.mark.parametrize('C', CLASSES)
def test_find_label_issues_finds_as_well_as_cleanlabs_default(C):
    "The rule chosen (the ranking's head) against cleanlab's default ('prune_by_noise_rate'), F1 averaged over seeds"
    ours, theirs = [], []
    for seed in range(5):
        p, y, flipped = flipped_case(seed, C)
        ours.append(f1(find_label_issues(p, y)[1].numpy(), flipped))
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            theirs.append(f1(np.nonzero(cleanlab.filter.find_label_issues(y, p, n_jobs=1))[0], flipped))
    assert np.mean(ours) >= np.mean(theirs), (np.mean(ours), np.mean(theirs))

def test_find_label_issues_by_hand():
    p = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8], [0.9, 0.1], [0.9, 0.1]])
    scores, idxs = find_label_issues(p, [0, 0, 1, 1, 1, 1])
    assert idxs.tolist() == [4, 5] and scores.tolist() == pytest.approx([0.9, 0.9])  # equal scores: lower index first

# --- the checks at the boundary
P3 = [[0.2, 0.3, 0.5], [0.6, 0.2, 0.2], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]]
ALL = [label_scores, class_thresholds, confident_joint, estimate_label_errors, suggested_labels, find_label_issues]
NEED_EVERY_CLASS = [class_thresholds, confident_joint, estimate_label_errors, find_label_issues]

@pytest.mark.parametrize('f', ALL)
@pytest.mark.parametrize('probs,labels,err,match', [
    (P3, [0, 1, 2], ValueError, '3 labels for 4 rows'),
    (P3, [0, 1, 2, 3], ValueError, r'0\.\.2, got values from 0 to 3'),
    (P3, [-1, 0, 1, 2], ValueError, r'0\.\.2, got values from -1 to 2'),
    (P3, [0., 1., 2., 1.], TypeError, 'integer class indices, got dtype torch.float'),
    (P3, [True, False, True, False], TypeError, 'integer class indices, got dtype torch.bool'),
    (P3, [[0], [1], [2], [1]], ValueError, r'shape \(N,\), got shape \(4, 1\)'),
    ([0.2, 0.3, 0.5], [0, 1, 2], ValueError, r'shape \(N, C\), got shape \(3,\)'),
    ([P3], [0, 1, 2, 1], ValueError, r'shape \(N, C\), got shape \(1, 4, 3\)'),
    ([[1.], [1.]], [0, 0], ValueError, 'at least 2 classes, got 1'),
    ([[0.2, 0.3], [0.5, 0.5]], [0, 1], ValueError, 'sum to 1'),
    ([[2.0, -1.0], [0.5, 0.5]], [0, 1], ValueError, 'range from -1 to 2'),
    ([[float('nan'), 0.5], [0.5, 0.5]], [0, 1], ValueError, '1 of 2 rows of the probabilities hold NaN'),
])
def test_bad_inputs(f, probs, labels, err, match):
    with pytest.raises(err, match=match): f(probs, labels)

@pytest.mark.parametrize('f', NEED_EVERY_CLASS)
def test_a_class_given_to_no_item(f):
    with pytest.raises(ValueError, match=r"No item is given class 1, 3 \(by index\): a class's threshold is the mean"):
        f(np.full((3, 4), 0.25), [0, 2, 0])

@pytest.mark.parametrize('f', [label_scores, suggested_labels])
def test_no_thresholds_no_need_of_every_class(f):
    assert len(f(np.full((3, 4), 0.25), [0, 2, 0])) == 3

@pytest.mark.parametrize('f', [label_scores, find_label_issues])
def test_unknown_method(f):
    with pytest.raises(ValueError, match=r"Unknown method 'margin': choose one of \('self_confidence'"):
        f(P3, [0, 1, 2, 1], 'margin')

def test_inputs_of_any_kind():
    "Lists, numpy arrays of any integer type, tensors: the same figures"
    y = [2, 0, 1, 2]
    ref = label_scores(P3, y)
    for probs, labels in [(np.array(P3), np.array(y, dtype=np.int32)),
                          (torch.tensor(P3), torch.tensor(y, dtype=torch.uint8))]:
        np.testing.assert_allclose(label_scores(probs, labels), ref, atol=1e-7)
    assert label_scores(np.zeros((0, 3)), []).shape == (0,)
