"Segmentation: pixel confusion, IoU, Dice, per-image losses, calibration and TTA against numpy, sklearn, torchmetrics"
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
import torch.nn as nn
import torch.nn.functional as F
import sklearn.metrics as skm
import matplotlib.pyplot as plt
from torchmetrics.functional.classification import multiclass_calibration_error
import fastai.interpret
from fastai.vision.all import SegmentationDataLoaders, Learner

import fastinterp
from fastinterp.data import DIGIT_CODES, digits_masks, digits_seg_learner
from fastinterp.segmentation import (SegmentationInterpretation, SegmentationStats, dice_from_confusion,
                                     iou_from_confusion, pixel_confusion)
from fastinterp.tta import SPATIAL, SpatialTfm
from conftest import count_loads, count_looks, fit_quietly

C = len(DIGIT_CODES)

@pytest.fixture(scope='module')
def masks_path(tmp_path_factory):
    return digits_masks(tmp_path_factory.mktemp('masks'), size=16)

@pytest.fixture(scope='module')
def seg(masks_path):
    "A narrow U-Net on 250 digit masks (50 to validate), trained for 2 epochs: right and wrong pixels both"
    return fit_quietly(digits_seg_learner(masks_path, n_images=250, width=8), 2)

@pytest.fixture(scope='module')
def by_hand(seg):
    "The valid set's logits, targets and softmax, computed by hand from the model"
    seg.model.eval()
    xs, ys = zip(*[(b[0], b[1]) for b in seg.dls.valid])
    with torch.no_grad(): logits = torch.cat([seg.model(x) for x in xs]).as_subclass(torch.Tensor)
    t = torch.cat(ys).as_subclass(torch.Tensor).long()
    return logits, t, torch.softmax(logits, 1), torch.cat(xs).as_subclass(torch.Tensor)

@pytest.fixture(scope='module')
def interp(seg):
    return SegmentationInterpretation.from_learner(seg, progress=False)

def random_masks(seed, shape=(6, 9, 7), C=5, ignore=None):
    g = np.random.default_rng(seed)
    t, d = g.integers(0, C, shape), g.integers(0, C, shape)
    t[:, 0, 0] = C - 1  # one class absent from both below: NaN
    t[t == 2], d[d == 2] = 0, 1
    if ignore is not None: t[g.random(shape) < 0.1] = ignore
    return t, d

# --- the pure functions against sklearn on the flattened masks
@pytest.mark.parametrize('seed', range(3))
@pytest.mark.parametrize('ignore', [None, 255])
def test_pixel_confusion_iou_dice_are_sklearns(seed, ignore):
    t, d = random_masks(seed, ignore=ignore)
    keep = t != ignore if ignore is not None else np.ones(t.shape, bool)
    ref = skm.confusion_matrix(t[keep], d[keep], labels=range(5))
    cm = pixel_confusion(torch.as_tensor(t), torch.as_tensor(d), 5, ignore_index=ignore)
    np.testing.assert_array_equal(cm, ref)
    present = [c for c in range(5) if (t[keep] == c).any() or (d[keep] == c).any()]
    iou, dice = iou_from_confusion(cm), dice_from_confusion(cm)
    np.testing.assert_allclose(iou[present], skm.jaccard_score(t[keep], d[keep], labels=present, average=None))
    np.testing.assert_allclose(dice[present], skm.f1_score(t[keep], d[keep], labels=present, average=None))
    assert np.isnan(iou[2]) and np.isnan(dice[2]) and 2 not in present  # class 2: in no target and no prediction

def test_iou_dice_by_hand():
    cm = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    np.testing.assert_allclose(iou_from_confusion(cm), [5 / 8, 3 / 6, np.nan])
    np.testing.assert_allclose(dice_from_confusion(cm), [10 / 13, 6 / 9, np.nan])

@pytest.mark.parametrize('ignore', [None, 3])
def test_stats_batch_by_batch_equal_the_whole(ignore):
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(10, 4, 6, 5, generator=g) * 2, 1)
    t = torch.randint(0, 4, (10, 6, 5), generator=g)
    whole, parts = SegmentationStats(4, ignore_index=ignore), SegmentationStats(4, ignore_index=ignore)
    whole.update(p, t)
    for s in range(0, 10, 3): parts.update(p[s:s + 3], t[s:s + 3])
    a, b = whole.compute(), parts.compute()
    for k in ('loss', 'entropy', 'inter', 'pred', 'targ', 'correct'): torch.testing.assert_close(a[k], b[k])
    np.testing.assert_array_equal(a['confusion'], b['confusion'])
    keep = (t != ignore) if ignore is not None else torch.ones_like(t, dtype=torch.bool)
    # per image: the mean NLL of its kept pixels, as F.nll_loss computes it with ignore_index
    ref = torch.stack([F.nll_loss(p[i:i + 1].log(), t[i:i + 1], ignore_index=-100 if ignore is None else ignore)
                       for i in range(10)])
    torch.testing.assert_close(a['loss'], ref.double(), rtol=1e-5, atol=1e-6)
    assert a['ignored'] == int((~keep).sum())

# --- the interpretation of a real fastai segmentation learner
def test_fastai_hands_out_fastinterps_class(seg):
    it = fastai.interpret.SegmentationInterpretation.from_learner(seg, progress=False)
    assert type(it) is SegmentationInterpretation and isinstance(it, fastai.interpret.SegmentationInterpretation)
    fastinterp.unpatch()
    try: assert type(fastai.interpret.SegmentationInterpretation.from_learner(seg)) is \
        fastai.interpret.SegmentationInterpretation
    finally: fastinterp.patch()

def test_confusion_iou_dice_match_sklearn_on_the_flattened_masks(interp, by_hand):
    _, t, p, _ = by_hand
    y, d = t.flatten().numpy(), p.argmax(1).flatten().numpy()
    np.testing.assert_array_equal(interp.confusion_matrix(), skm.confusion_matrix(y, d, labels=range(C)))
    for norm in ('true', 'pred', 'all'):
        np.testing.assert_allclose(interp.confusion_matrix(norm), skm.confusion_matrix(y, d, labels=range(C),
                                                                                      normalize=norm), atol=1e-12)
    present = [c for c in range(C) if (y == c).any() or (d == c).any()]
    np.testing.assert_allclose(interp.iou()[present], skm.jaccard_score(y, d, labels=present, average=None))
    np.testing.assert_allclose(interp.dice()[present], skm.f1_score(y, d, labels=present, average=None))
    assert np.isnan(interp.iou()[[c for c in range(C) if c not in present]]).all()
    assert interp.mean_iou() == pytest.approx(np.mean(skm.jaccard_score(y, d, labels=present, average=None)))
    assert interp.pixel_accuracy() == pytest.approx((y == d).mean())
    df = interp.per_class()
    assert df['class'].tolist() == DIGIT_CODES and df['pixels'].tolist() == np.bincount(y, minlength=C).tolist()

def test_per_image_losses_are_cross_entropy_by_hand(interp, by_hand):
    logits, t, p, _ = by_hand
    ref = F.cross_entropy(logits, t, reduction='none').mean((1, 2))
    torch.testing.assert_close(interp.losses.float(), ref, rtol=1e-5, atol=1e-5)
    vals, idxs = interp.top_losses(5)
    assert idxs.tolist() == sorted(range(len(ref)), key=lambda i: -float(interp.losses[i]))[:5]
    ent = (-(p * p.clamp_min(1e-38).log()).sum(1) / np.log(C)).mean((1, 2))
    torch.testing.assert_close(interp.most_uncertain()[0].float(), ent.sort(descending=True).values, rtol=1e-5,
                               atol=1e-6)
    # each image's IoU: over the classes in its target or its prediction
    for i in idxs.tolist():
        a, b = t[i].flatten().numpy(), p[i].argmax(0).flatten().numpy()
        labels = sorted(set(a) | set(b))
        assert float(interp.image_iou()[i]) == pytest.approx(skm.jaccard_score(a, b, labels=labels,
                                                                               average=None).mean())

def test_calibration_over_pixels_is_torchmetrics(interp, by_hand):
    _, t, p, _ = by_hand
    flat_p, flat_t = p.permute(0, 2, 3, 1).reshape(-1, C), t.flatten()
    ece = multiclass_calibration_error(flat_p, flat_t, C, n_bins=15, norm='l1')
    m = interp.calibration()
    assert m['ece'] == pytest.approx(float(ece), abs=1e-5)
    assert m['nll'] == pytest.approx(float(F.nll_loss(flat_p.log(), flat_t)), rel=1e-5)
    assert m['brier'] == pytest.approx(float(((flat_p - F.one_hot(flat_t, C)) ** 2).sum(1).mean()), rel=1e-5)
    assert m['accuracy'] == pytest.approx(interp.pixel_accuracy())

def test_nothing_of_size_n_c_h_w_is_kept(interp, by_hand):
    _, _, p, _ = by_hand
    kept = sum(v.numel() for v in interp.res.values() if isinstance(v, torch.Tensor))
    kept += interp.res['confusion'].size
    assert kept < p.numel() / 20, (kept, p.numel())  # per image a few numbers and C x 3 counts, no pixels

def test_ignore_index_leaves_those_pixels_out(seg, by_hand):
    _, t, p, _ = by_hand
    it = SegmentationInterpretation.from_learner(seg, ignore_index=0, progress=False)  # the background left out
    keep = (t != 0).flatten().numpy()
    y, d = t.flatten().numpy()[keep], p.argmax(1).flatten().numpy()[keep]
    np.testing.assert_array_equal(it.confusion_matrix(), skm.confusion_matrix(y, d, labels=range(C)))
    assert it.res['ignored'] == int((~keep).sum()) and 'left out' in repr(it)

def test_unlabelled_images_get_uncertainty_only(seg, masks_path):
    dl = seg.dls.test_dl(sorted((masks_path/'images').iterdir())[:12])
    it = SegmentationInterpretation.from_learner(seg, dl=dl, progress=False)
    assert it.n == 12 and len(it.most_uncertain(3)[1]) == 3 and 'no targets' in repr(it)
    with pytest.raises(ValueError, match='needs targets'): it.iou()
    it.plot_most_uncertain(2)
    assert len(plt.gcf().axes[0].figure.axes) >= 6  # image, predicted, entropy per row (and the colour bar)
    plt.close('all')

@pytest.mark.parametrize('labelled', [True, False])
def test_build_loads_each_image_once(seg, masks_path, monkeypatch, labelled):
    "Whether the loader has masks is seen in the pass: no batch is fetched before it (it was, to find out)"
    loads = count_loads(monkeypatch)
    dl = seg.dls.valid if labelled else seg.dls.test_dl(sorted((masks_path/'images').iterdir())[:12])
    it = SegmentationInterpretation.from_learner(seg, dl=dl, progress=False)
    assert sorted(loads) == list(range(it.n)) and it.n == len(dl.dataset) and it.labelled == labelled

@pytest.mark.parametrize('tta', [False, 2])
def test_outputs_are_looked_at_once_per_build(seg, monkeypatch, tta):
    "Whether the masks' outputs are probabilities already is seen on the first batch (every batch was looked at)"
    assert len(seg.dls.valid) > 1
    looks = count_looks(monkeypatch)
    it = SegmentationInterpretation.from_learner(seg, tta=tta, progress=False)
    assert len(looks) == 1 and len(looks[0]) == 4, looks  # a batch of (B, C, H, W) outputs, in one of the passes
    assert it.n == len(seg.dls.valid.dataset)

def test_plot_top_losses_one_figure_of_four_panels_per_image(interp):
    plt.close('all')
    interp.plot_top_losses(3)
    assert len(plt.get_fignums()) == 1
    fig = plt.gcf()
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert titles[:4] == ['image', 'target', 'predicted', 'uncertainty (entropy)']
    texts = [t.get_text() for a in fig.axes for t in a.texts]
    worst = int(interp.top_losses(1)[1])
    name = Path(interp.items([worst])[0]).name  # the image's file
    assert name.endswith('.png') and any(s.startswith(f'image {name} · loss ') and 'IoU' in s for s in texts)
    plt.close('all')
    interp.plot_confusion_matrix(); interp.plot_reliability()
    assert len(plt.get_fignums()) == 2
    plt.close('all')

# --- bad input: one clear error each
def test_a_classifier_is_refused_by_the_segmentation_interpretation(digits_vision):
    with pytest.raises(ValueError, match='one row per item, not per pixel'):
        SegmentationInterpretation.from_learner(digits_vision, progress=False)

def test_a_segmentation_model_is_refused_by_the_classification_interpretation(seg):
    with pytest.raises(ValueError, match='use SegmentationInterpretation'):
        fastinterp.ClassificationInterpretation.from_learner(seg, progress=False)

def test_masks_with_a_class_the_vocab_lacks(masks_path):
    files = sorted((masks_path/'images').iterdir())[:40]
    dls = SegmentationDataLoaders.from_label_func(masks_path, files, lambda f: masks_path/'masks'/f.name,
                                                  codes=DIGIT_CODES[:5], bs=8, num_workers=0)
    learn = Learner(dls, nn.Conv2d(3, 5, 1), loss_func=nn.CrossEntropyLoss())
    with pytest.raises(ValueError, match=r'holds class \d+, which the vocab of 5 classes lacks'):
        SegmentationInterpretation.from_learner(learn, progress=False)
    with pytest.raises(ValueError, match='which the vocab of 3 classes lacks'):
        pixel_confusion(torch.tensor([0, 4]), torch.tensor([0, 1]), 3)

# --- TTA that undoes its flips and rotations
class _Pointwise(nn.Module):
    "A 1x1 convolution: its outputs at a pixel depend on that pixel alone, so every flip and rotation commutes"
    def __init__(self): super().__init__(); self.conv = nn.Conv2d(3, C, 1)
    def forward(self, x): return self.conv(x)

def test_tta_of_an_equivariant_model_changes_nothing(seg):
    learn = Learner(seg.dls, _Pointwise(), loss_func=nn.CrossEntropyLoss())
    plain = learn.get_preds()[0]
    res = learn.tta(n=7, beta=None, progress=False)  # all seven symmetries of a square, each undone
    (aug, un), _ = res
    torch.testing.assert_close(aug, plain, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(un, plain, atol=1e-6, rtol=1e-5)
    assert [i.split(' (')[1][:-1] for i in res.report.index[:7]] == list(SPATIAL)

def test_tta_averages_undone_passes_as_by_hand(seg, by_hand):
    _, t, p, x = by_hand
    res = seg.tta(n=4, progress=False)
    tfms = [SPATIAL[k] for k in ('hflip', 'vflip', 'rot180', 'rot90')]
    with torch.no_grad():
        aug = torch.stack([torch.softmax(tf.undo(seg.model(tf.apply(x))), 1) for tf in tfms]).mean(0)
    torch.testing.assert_close(res[0], aug.lerp(p, 0.25), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(res[0].sum(1), torch.ones(res[0].shape[0], 16, 16), atol=1e-5, rtol=0)
    y = t.flatten().numpy()
    for row, probs in (('un-augmented', p), (res.report.index[-1], res[0])):
        d = probs.argmax(1).flatten().numpy()
        present = [c for c in range(C) if (y == c).any() or (d == c).any()]
        assert res.report.loc[row, 'mean_iou'] == pytest.approx(skm.jaccard_score(y, d, labels=present,
                                                                                  average=None).mean())
    it = SegmentationInterpretation.from_learner(seg, tta=4, progress=False)
    d = res[0].argmax(1).flatten().numpy()
    np.testing.assert_array_equal(it.confusion_matrix(), skm.confusion_matrix(y, d, labels=range(C)))

def test_tta_refuses_what_it_cannot_undo(seg):
    with pytest.raises(ValueError, match='no way to undo them'):
        seg.tta(n=2, batch_tfms=lambda b: b, progress=False)
    with pytest.raises(ValueError, match='is not undone by its undo'):
        seg.tta(n=1, spatial=[SpatialTfm('shift', lambda x: x.roll(1, -1), lambda y: y)], progress=False)
    with pytest.raises(TypeError, match='without its undo'):
        seg.tta(n=1, spatial=[lambda x: x.flip(-1)], progress=False)
    with pytest.raises(ValueError, match='at most 7'):
        seg.tta(n=8, progress=False)
    with pytest.raises(ValueError, match='Unknown spatial transform'):
        seg.tta(n=1, spatial=['mirror'], progress=False)
    with pytest.raises(ValueError, match='beta=None is for Learner.tta'):
        SegmentationInterpretation.from_learner(seg, tta=2, beta=None, progress=False)
    with pytest.raises(ValueError, match='are for tta='):
        SegmentationInterpretation.from_learner(seg, beta=0.5, progress=False)

# --- the report of an exported segmentation learner on a folder of images and masks
def _copy(src, dst, n, mask_of=lambda m: m):
    import shutil
    (dst/'images').mkdir(parents=True); (dst/'masks').mkdir()
    files = sorted((src/'images').iterdir())[-n:]
    for f in files:
        shutil.copy(f, dst/'images'/f.name)
        Image.fromarray(mask_of(np.array(Image.open(src/'masks'/f.name)))).save(dst/'masks'/f.name)
    return files

def test_report_of_images_and_masks(seg, masks_path, tmp_path, capsys):
    from fastinterp.cli import main
    from test_report import Page
    seg.export(tmp_path/'seg.pkl')
    files = _copy(masks_path, tmp_path/'data', 30)
    main(['report', str(tmp_path/'seg.pkl'), str(tmp_path/'data'), '--out', str(tmp_path/'rep'), '--tta', '2'])
    page = Page((tmp_path/'rep'/'report.html').read_text())
    assert {'summary', 'per-class', 'confusion-matrix', 'top-losses', 'most-uncertain', 'tta', 'calibration',
            'files'} <= set(page.sections)
    # the masks as the page read them: each class's target pixels counted from the PNGs by hand
    counts = np.bincount(np.concatenate([np.array(Image.open(masks_path/'masks'/f.name)).ravel() for f in files]),
                         minlength=C)
    t = page.table('per-class')
    assert t['class'].tolist() == DIGIT_CODES
    assert [int(v.replace(',', '')) for v in t['target pixels']] == counts.tolist()
    assert (tmp_path/'rep'/'per_image.csv').read_text().count('\n') == 31
    assert 'mean IoU' in capsys.readouterr().out

def test_report_refuses_masks_it_cannot_read(seg, masks_path, tmp_path, capsys):
    from fastinterp.cli import main
    seg.export(tmp_path/'seg.pkl')
    _copy(masks_path, tmp_path/'bad', 10, mask_of=lambda m: np.where(m > 0, 40, 0).astype(np.uint8))
    with pytest.raises(SystemExit) as e: main(['report', str(tmp_path/'seg.pkl'), str(tmp_path/'bad'), '--out',
                                                str(tmp_path/'rep')])
    assert e.value.code == 1 and 'holds class 40, which the vocab of 11 classes lacks' in capsys.readouterr().err
    _copy(masks_path, tmp_path/'missing', 10)
    next((tmp_path/'missing'/'masks').iterdir()).unlink()
    with pytest.raises(SystemExit) as e: main(['report', str(tmp_path/'seg.pkl'), str(tmp_path/'missing'), '--out',
                                                str(tmp_path/'rep')])
    assert e.value.code == 1 and 'have no mask of the same name' in capsys.readouterr().err

def test_the_pass_runs_with_the_objects_before_it_frozen(seg):
    "As every inference pass: what the process held before it is kept out of the collector's sweeps, then given back"
    import gc
    from fastai.callback.core import Callback
    frozen = []
    class Sees(Callback):
        def after_batch(self): frozen.append(gc.get_freeze_count())
    with seg.added_cbs([Sees()]): SegmentationInterpretation.from_learner(seg, progress=False)
    assert frozen and min(frozen) > 1000 and gc.get_freeze_count() == 0
