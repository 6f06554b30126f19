"How interpretations show themselves: titles, fastai's plotting API, one figure per plot, indexing, repr, diagrams"
import inspect, re
from collections import Counter
import numpy as np, pytest, torch
import torch.nn as nn
import torch.nn.functional as F
import sklearn.metrics as skm
import matplotlib.pyplot as plt
from matplotlib.font_manager import FontProperties
import fastai.interpret
from fastai.vision.data import get_grid

import fastinterp
from fastinterp.interpret import ClassificationInterpretation
from fastinterp.interpret import StreamingInterpretation
from fastinterp.show import reliability_diagram
from conftest import plain_learner, fit_quietly, kernel_spec

@pytest.fixture(scope='module')
def interp(digits_vision):
    return ClassificationInterpretation.from_learner(digits_vision)

@pytest.fixture(scope='module')
def streamed(digits_vision):
    return ClassificationInterpretation.from_learner(digits_vision, streaming=True, k=20, progress=False)

@pytest.fixture(scope='module')
def binary(digits_arrays):
    "A two-class learner on the digits (odd or even), trained, with its interpretation"
    X, y = digits_arrays
    learn = fit_quietly(plain_learner(X, y % 2, nn.CrossEntropyLoss(), 2), 1)
    return learn, ClassificationInterpretation.from_learner(learn)

@pytest.fixture(autouse=True)
def no_figures_left():
    yield
    plt.close('all')

def drawn(plot):
    "The one figure `plot()` draws; it must return None, as fastai's plots do"
    before = set(plt.get_fignums())
    assert plot() is None
    new = set(plt.get_fignums()) - before
    assert len(new) == 1, f"{len(new)} figures drawn"
    return plt.figure(new.pop())

def titles(fig): return [ax.get_title() for ax in fig.axes if ax.get_title()]
def image_axes(fig): return [ax for ax in fig.axes if ax.images]

def with_probs(it, probs):
    "`it` with other cached probabilities (and the decisions and losses that follow from them)"
    it.probs = torch.as_tensor(probs, dtype=torch.float32)
    it.decoded = it.probs.argmax(1)
    it.losses = F.nll_loss(it.probs.clamp_min(1e-12).log(), it.targs, reduction='none')
    return it

# --- 1. different probabilities in one title never print the same
def two_classes(n, first):
    "(n, 10) probabilities on classes 0 and 1 only: 0.7 and 0.3, and `first` for the first items"
    p = np.zeros((n, 10))
    p[:, :2] = [0.7, 0.3]
    p[:len(first), :2] = first
    return p

def test_title_of_a_near_tie(digits_vision):
    it = ClassificationInterpretation.from_learner(digits_vision, progress=False)
    n = len(it.probs)
    p = two_classes(n, [[0.5000005, 0.4999995]])
    it.targs = torch.ones(n, dtype=torch.long)
    with_probs(it, p)
    t = it._title(0)
    a, b = re.match(r'pred 0: ([\d.]+) · given 1: ([\d.]+)$', t).groups()
    assert a != b and float(a) > float(b), t
    fig = drawn(lambda: it.plot_top_losses([n - 1]))  # the near tie has the smallest loss: the last rank
    assert titles(fig)[0].split('\n')[0] == t

def test_gallery_shares_one_number_of_decimals(digits_vision):
    "Each title tells its probabilities apart, and the whole gallery prints them with one number of decimals"
    it = ClassificationInterpretation.from_learner(digits_vision, progress=False)
    n = len(it.probs)
    p = two_classes(n, [[0.9986, 0.0014], [0.501, 0.499], [0.62, 0.38]])
    it.targs = torch.ones(n, dtype=torch.long)
    with_probs(it, p)
    fig = drawn(lambda: it.plot_top_losses(4))  # the largest losses: p(given) 0.0014, then 0.3 three times
    nums = [s for t in titles(fig) for s in re.findall(r': ([\d.]+)', t.split('\n')[0])]
    assert len(nums) == 8 and {len(s.split('.')[1]) for s in nums} == {4}, nums
    assert '0.9986 · given 1: 0.0014' in titles(fig)[0]

# --- 2. fastai's API, parameter for parameter
STOCK = fastai.interpret.ClassificationInterpretation

@pytest.mark.parametrize('cls', [ClassificationInterpretation, StreamingInterpretation])
@pytest.mark.parametrize('name', ['plot_top_losses', 'plot_confusion_matrix', 'show_results', '__getitem__',
                                  'top_losses'])
def test_stock_parameters_are_accepted(cls, name):
    "Every parameter of fastai's method, in its place and with its default: fastinterp adds, it never takes away"
    if cls is StreamingInterpretation and name in ('show_results', '__getitem__'):
        pytest.skip('streamed statistics keep no item to show or index')
    var = lambda ps: [p for p in ps if p.kind == p.VAR_KEYWORD]
    stock = list(inspect.signature(getattr(STOCK, name)).parameters.values())
    ours = list(inspect.signature(getattr(cls, name)).parameters.values())
    named = [p for p in stock if p.kind != p.VAR_KEYWORD]
    for s, o in zip(named, ours):
        assert s.name == o.name and s.kind == o.kind, (name, s, o)
        if s.default is not inspect.Parameter.empty: assert o.default == s.default, (name, s, o)
    assert len(ours) >= len(stock) and len(var(ours)) == len(var(stock)), (name, ours)

def test_confusion_matrix_keywords_as_fastai(interp, reference):
    "figsize and dpi go to the figure (the course's call); normalize=True means rows; norm_dec and plot_txt work"
    _, targs, _ = reference
    fig = drawn(lambda: interp.plot_confusion_matrix(figsize=(12, 12), dpi=60))
    assert tuple(fig.get_size_inches()) == (12, 12) and fig.dpi == 60
    cm = skm.confusion_matrix(targs, interp.decoded.numpy(), labels=range(10))
    np.testing.assert_array_equal(image_axes(fig)[0].images[0].get_array(), cm)
    assert '1' in [t.get_text() for t in image_axes(fig)[0].texts]  # counts, as normalize=False means
    rows = skm.confusion_matrix(targs, interp.decoded.numpy(), labels=range(10), normalize='true')
    for normalize in (True, 'true'):
        fig = drawn(lambda: interp.plot_confusion_matrix(normalize=normalize, norm_dec=3))
        ax = image_axes(fig)[0]
        np.testing.assert_allclose(ax.images[0].get_array(), rows)
        txt = [t.get_text() for t in ax.texts]
        assert len(txt) == 100 and all(len(s.split('.')[1]) >= 3 for s in txt), txt
        # a share that is not exactly 1 never reads 1.000
        assert all(s != '1.000' or v == 1 for s, v in zip(txt, rows.flat))
    for normalize in ('pred', 'all', None, False): drawn(lambda: interp.plot_confusion_matrix(normalize))
    assert not image_axes(drawn(lambda: interp.plot_confusion_matrix(plot_txt=False)))[0].texts
    with pytest.raises(ValueError, match="normalize must be"): interp.plot_confusion_matrix('rows')

def grid_shape(fig):
    return image_axes(fig)[0].get_subplotspec().get_gridspec().get_geometry()

def test_gallery_layout_as_fastai(interp):
    "nrows, ncols and figsize mean what they mean to fastai's get_grid; the default layout is fastai's too"
    fig = drawn(lambda: interp.plot_top_losses(9, figsize=(15, 11)))
    assert tuple(fig.get_size_inches()) == (15, 11)
    fig = drawn(lambda: interp.plot_top_losses(5, nrows=1))
    assert grid_shape(fig) == (1, 5) and len(image_axes(fig)) == 5 and len(fig.axes) == 5
    assert len({round(ax.get_position().y0, 6) for ax in fig.axes}) == 1
    assert grid_shape(drawn(lambda: interp.plot_top_losses(6, ncols=6))) == (1, 6)
    assert grid_shape(drawn(lambda: interp.plot_top_losses(6, nrows=3, ncols=2))) == (3, 2)
    for n in (1, 2, 3, 4, 5, 7, 9, 10):
        stock = get_grid(n, return_fig=True)[0]
        want = stock.axes[0].get_subplotspec().get_gridspec().get_geometry()
        plt.close(stock)
        assert grid_shape(drawn(lambda: interp.plot_top_losses(n))) == want, n
    with pytest.raises(ValueError, match='holds 2 of the 5'): interp.plot_top_losses(5, nrows=1, ncols=2)
    # the rest goes to each image's show, as fastai's plot_top_losses passes it
    fig = drawn(lambda: interp.plot_top_losses(3, alpha=0.5))
    assert all(ax.images[0].get_alpha() == 0.5 for ax in image_axes(fig))
    for plot in (lambda: interp.plot_most_uncertain(4, nrows=1, figsize=(9, 3)),
                 lambda: interp.plot_most_correct('3', 4, nrows=1, figsize=(9, 3)),
                 lambda: interp.plot_most_incorrect('9', 2, ncols=1, figsize=(3, 6))):
        fig = drawn(plot)
        assert fig.get_size_inches()[1] in (3, 6) and grid_shape(fig) in ((1, 4), (2, 1))

def test_top_losses_at_ranks(interp, reference):
    "k as a list: those ranks of the loss ranking, as fastai takes it"
    _, _, losses = reference
    order = np.argsort(-losses, kind='stable')
    fig = drawn(lambda: interp.plot_top_losses([0, 2, 4]))
    shown = [float(t.split('loss ')[1]) for t in titles(fig)]
    np.testing.assert_allclose(shown, losses[order[[0, 2, 4]]], atol=0.006)
    fig = drawn(lambda: interp.plot_top_losses([0, 1], largest=False))
    np.testing.assert_allclose([float(t.split('loss ')[1]) for t in titles(fig)], np.sort(losses)[:2], atol=0.006)
    with pytest.raises(IndexError, match='out of range'): interp.plot_top_losses([len(losses)])

def test_streamed_plots_take_the_same_keywords(streamed, interp):
    fig = drawn(lambda: streamed.plot_top_losses(4, nrows=1, figsize=(10, 3)))
    assert grid_shape(fig) == (1, 4) and tuple(fig.get_size_inches()) == (10, 3)
    assert titles(fig) == titles(drawn(lambda: interp.plot_top_losses(4, nrows=1, figsize=(10, 3))))
    at_ranks = [titles(drawn(lambda: i.plot_top_losses([1, 3]))) for i in (streamed, interp)]
    assert at_ranks[0] == at_ranks[1] and len(at_ranks[0]) == 2
    assert grid_shape(drawn(lambda: streamed.plot_most_uncertain(4, ncols=4))) == (1, 4)
    fig = drawn(lambda: streamed.plot_confusion_matrix(normalize=True, figsize=(5, 5), plot_txt=False))
    assert tuple(fig.get_size_inches()) == (5, 5) and not image_axes(fig)[0].texts

# --- 3. indexing, as fastai's __getitem__ takes it
def test_getitem_slices_lists_tensors_arrays(interp, reference, digits_vision):
    probs, targs, losses = reference
    n = len(probs)
    first = digits_vision.dls.valid.one_batch()  # the valid set in order: its first items
    x, p, t, d, l = interp[:3]
    torch.testing.assert_close(x.cpu().as_subclass(torch.Tensor), first[0][:3].cpu().as_subclass(torch.Tensor))
    np.testing.assert_allclose(p.numpy(), probs[:3], atol=1e-6)
    np.testing.assert_array_equal(t.numpy(), targs[:3])
    np.testing.assert_allclose(l.numpy(), losses[:3], rtol=1e-5, atol=1e-6)
    for idxs, want in [(-1, [n - 1]), (5, [5]), (slice(-2, None), [n - 2, n - 1]), (slice(10, 4, -3), [10, 7]),
                       ([3, -1], [3, n - 1]), (torch.tensor([4, 2]), [4, 2]), (np.array([7, 1]), [7, 1]),
                       (range(2), [0, 1]), (np.int64(8), [8]), (torch.tensor(6), [6]),
                       (torch.arange(n) == 9, [9]), (np.arange(n) < 2, [0, 1])]:
        x, p, t, d, l = interp[idxs]
        np.testing.assert_allclose(p.numpy(), probs[want], atol=1e-6, err_msg=str(idxs))
        assert len(x) == len(want) and t.tolist() == targs[want].tolist()
    torch.testing.assert_close(interp.batch(slice(-3, None))[0], interp.batch([n - 3, n - 2, n - 1])[0])
    assert interp.items(slice(0, 2)) == list(digits_vision.dls.valid.items[:2])
    assert interp.items(-1) == [digits_vision.dls.valid.items[-1]]
    with pytest.raises(IndexError, match=f'Index {n} is out of range'): interp[n]
    with pytest.raises(IndexError, match='out of range'): interp[[0, -n - 1]]
    with pytest.raises(TypeError, match='integers'): interp[[0.5]]
    with pytest.raises(ValueError, match='No items'): interp[5:5]

def test_show_results_from_the_cache(interp, digits_vision):
    "fastai's show_results: the items with their targets and predictions, drawn once, no inference"
    calls = []
    h = digits_vision.model.register_forward_hook(lambda *a: calls.append(1))
    try: fig = drawn(lambda: interp.show_results(slice(0, 4), nrows=1))
    finally: h.remove()
    assert not calls and grid_shape(fig) == (1, 4)
    names = [str(v) for v in interp.vocab]
    pairs = zip(interp.targs[:4].tolist(), interp.decoded[:4].tolist())
    assert titles(fig) == [f'{names[t]}\n{names[d]}' for t, d in pairs]

def test_show_results_without_show_results_of_its_own(binary):
    "A plain DataLoader has no show_results: the items are shown with their titles"
    _, it = binary
    fig = drawn(lambda: it.show_results([0, 1, 2]))
    cells = [c.get_text().get_text() for c in fig.axes[0].tables[0].get_celld().values()]
    assert sum(c.startswith('pred ') for c in cells) == 3, cells

# --- 4. one figure per plot, returned as None: Jupyter shows it once
@pytest.mark.parametrize('plot', [
    lambda i, s: i.plot_top_losses(4), lambda i, s: i.plot_most_uncertain(4), lambda i, s: i.plot_most_correct('3', 2),
    lambda i, s: i.plot_most_incorrect('9', 2), lambda i, s: i.plot_confusion_matrix(),
    lambda i, s: i.plot_reliability(), lambda i, s: i.show_results([0, 1]), lambda i, s: s.plot_top_losses(4),
    lambda i, s: s.plot_most_uncertain(4), lambda i, s: s.plot_confusion_matrix(), lambda i, s: s.plot_reliability(),
])
def test_a_plot_draws_one_figure_and_returns_none(interp, streamed, plot):
    drawn(lambda: plot(interp, streamed))

@pytest.fixture(scope='module')
def inline_kernel(tmp_path_factory):
    "A kernel spec for this interpreter, with matplotlib's inline backend, as in a notebook"
    yield from kernel_spec(tmp_path_factory, 'fastinterp-display', MPLBACKEND='module://matplotlib_inline.backend_inline')

PLOTS = ["interp.plot_top_losses(4)", "interp.plot_most_uncertain(4)", "interp.plot_most_correct('3', 2)",
         "interp.plot_most_incorrect(worst, 2)", "interp.plot_confusion_matrix(figsize=(6, 6), dpi=60)",
         "interp.plot_reliability()", "interp.show_results([0, 1, 2])", "st.plot_top_losses(4)",
         "st.plot_most_uncertain(4)", "st.plot_confusion_matrix()", "st.plot_reliability()"]

def test_notebook_shows_each_plot_once(digits_vision, digits_path, inline_kernel, tmp_path):
    "Run in a kernel, every plot call without a trailing semicolon: one image each, and no Figure as the cell's value"
    import nbformat
    from nbclient import NotebookClient
    torch.save(digits_vision.model.state_dict(), tmp_path/'digits.pth')
    setup = (f"from fastai.vision.all import *\nfrom fastinterp.data import digits_learner\n"
             f"from fastinterp.interpret import ClassificationInterpretation\n"
             f"learn = digits_learner({str(digits_path)!r})\n"
             f"learn.model.load_state_dict(torch.load({str(tmp_path/'digits.pth')!r}))\n"
             f"interp = ClassificationInterpretation.from_learner(learn, progress=False)\n"
             f"st = ClassificationInterpretation.from_learner(learn, streaming=True, progress=False)\n"
             f"worst = interp.most_confused()[0][0]")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in [setup, *PLOTS, 'interp', 'st']])
    client = NotebookClient(nb, timeout=300, kernel_name=inline_kernel, resources={'metadata': {'path': str(tmp_path)}})
    client.execute()
    for cell in nb.cells[1:len(PLOTS) + 1]:
        images = [o for o in cell.outputs if 'image/png' in o.get('data', {})]
        assert len(images) == 1, (cell.source, [o.get('output_type') for o in cell.outputs])
        assert not [o for o in cell.outputs if o.output_type == 'execute_result'], cell.source
    for cell, name in zip(nb.cells[-2:], ['ClassificationInterpretation', 'StreamingInterpretation']):
        text = cell.outputs[0]['data']['text/plain']
        assert text.startswith(f'{name}: 359 items, 10 classes') and ' at 0x' not in text, text

# --- 5. repr: what the interpretation is of
def test_repr_says_what_it_is(interp, reference):
    probs, targs, _ = reference
    acc = (probs.argmax(1) == targs).mean()
    r = repr(interp)
    assert r.splitlines() == [
        "ClassificationInterpretation: 359 items, 10 classes (0, 1, 2, 3, …, 9)",
        f"  single-label, softmax of CrossEntropyLoss · accuracy {acc:.2%}",
        "  from the validation set (learn.dls[1])"]
    assert all(len(l) <= 100 for l in r.splitlines())

def test_repr_of_tta_mc_dropout_temperature_unlabelled(digits_vision, digits_path, binary):
    with digits_vision.no_bar():
        tta = ClassificationInterpretation.from_learner(digits_vision, tta=2, progress=False)
        mc = ClassificationInterpretation.from_learner(digits_vision, mc_dropout=3, progress=False)
    assert repr(tta).splitlines()[-1] == "  from the validation set (learn.dls[1]) · TTA 2 passes"
    assert repr(mc).splitlines()[-1] == "  from the validation set (learn.dls[1]) · MC dropout 3 passes"
    files = sorted((digits_path/'valid').rglob('*.png'))[:50]
    un = ClassificationInterpretation.from_learner(digits_vision, dl=digits_vision.dls.test_dl(files), progress=False)
    assert repr(un).splitlines()[1:] == ["  single-label, softmax of CrossEntropyLoss · unlabelled",
                                         "  from a TfmdDL of 50 items"]
    learn, _ = binary
    learn.temperature = 1.5
    try:
        r = repr(ClassificationInterpretation.from_learner(learn, progress=False)).splitlines()
    finally: learn.temperature = None
    assert r[0] == "ClassificationInterpretation: 360 items, 2 classes (0, 1)"
    assert r[-1] == "  from the validation set (learn.dls[1]) · temperature 1.5"

def test_repr_of_streamed_and_of_activations(streamed, interp):
    lines = repr(streamed).splitlines()
    assert lines[:2] == ["StreamingInterpretation: 359 items, 10 classes (0, 1, 2, 3, …, 9)",
                         f"  single-label, softmax of CrossEntropyLoss · accuracy {streamed.accuracy():.2%}"]
    assert lines[2] == "  streamed from the validation set (learn.dls[1])" and 'top 20 kept' in lines[3]
    assert all(len(l) <= 110 for l in lines)
    assert repr(fastinterp.activation_for(nn.CrossEntropyLoss())) == \
        "LossActivation(loss='CrossEntropyLoss', name='softmax', kind='multiclass', expects='logits', axis=1)"
    assert repr(fastinterp.activation_for(nn.BCEWithLogitsLoss())) == ("LossActivation(loss='BCEWithLogitsLoss', "
        "name='sigmoid', kind='multilabel', expects='logits', axis=1, thresh=0.5)")

# --- 6. readable figures
def test_titles_at_the_default_size(interp):
    size = FontProperties(size=plt.rcParams['axes.titlesize']).get_size_in_points()
    for plot in (lambda: interp.plot_top_losses(4), lambda: interp.plot_most_uncertain(4)):
        fig = drawn(plot)
        assert all(ax.title.get_fontsize() >= size for ax in image_axes(fig))
        fig.canvas.draw()  # and no title runs into its neighbour's
        boxes = [ax.title.get_window_extent() for ax in image_axes(fig)]
        assert not any(a.overlaps(b) for j, a in enumerate(boxes) for b in boxes[j + 1:])

def test_confusion_ticks_rotate_only_when_long(interp):
    from fastinterp.show import plot_confusion
    ax = image_axes(drawn(lambda: interp.plot_confusion_matrix()))[0]
    assert {t.get_rotation() for t in ax.get_xticklabels()} == {0}
    cm = np.eye(100, dtype=int) * 5
    ax = image_axes(plot_confusion(cm, [f'class{i}' for i in range(100)]))[0]
    assert {t.get_rotation() for t in ax.get_xticklabels()} == {90}

def test_colour_legend_only_where_right_and_wrong_both_show(interp):
    assert 'green: right, red: wrong' in drawn(lambda: interp.plot_top_losses(4)).get_suptitle()
    assert 'green: right, red: wrong' in drawn(lambda: interp.plot_most_uncertain(4)).get_suptitle()
    for plot in (lambda: interp.plot_most_incorrect('9', 2), lambda: interp.plot_most_correct('3', 2)):
        assert 'green' not in drawn(plot).get_suptitle()

# --- 7. reliability diagram: bins of few items marked, what MCE is over, the gap in the legend's colour
def calibration_case(seed=0):
    "1,000 items: 500 at p about 0.55 all right (under-confident), 498 at about 0.95 half right, 2 at 0.32 both right"
    g = torch.Generator().manual_seed(seed)
    conf = torch.cat([0.55 + 0.01 * torch.rand(500, generator=g), 0.95 + 0.01 * torch.rand(498, generator=g),
                      torch.tensor([0.32, 0.33])])
    right = torch.cat([torch.ones(500), torch.arange(498) % 2 == 0, torch.ones(2)]).bool()
    probs = torch.cat([conf[:, None], ((1 - conf) / 3)[:, None].expand(-1, 3)], 1)  # 4 classes: class 0 the top one
    return probs, torch.where(right, 0, 1)

def test_reliability_marks_few_item_bins_and_says_what_mce_is_over():
    probs, targs = calibration_case()
    fig = reliability_diagram(probs, targs, n_bins=10)
    ax = fig.axes[0]
    conf, right = probs.max(1).values.numpy().astype(np.float64), (probs.argmax(1) == targs).numpy()
    idx = np.minimum((conf * 10).astype(int), 9)
    full = [b for b in range(10) if (idx == b).any()]
    gaps = {b: abs(right[idx == b].mean() - conf[idx == b].mean()) for b in full}
    counts = {b: int((idx == b).sum()) for b in full}
    assert counts[3] == 2 and max(gaps, key=gaps.get) == 3  # the MCE comes from a bin of 2 items
    title = ax.get_title()
    assert f"MCE {100 * gaps[3]:.2f}%: largest gap of the 3 non-empty bins, in one of 2 items" in title
    assert f"over the 2 bins of 10+ items only: MCE {100 * max(gaps[5], gaps[9]):.2f}%" in title
    bars = list(ax.containers[0])
    assert [b.get_hatch() for b in bars] == ['..', None, None]  # the bin of 2 items, lighter and dotted
    assert bars[0].get_facecolor() != bars[1].get_facecolor()
    assert any('fewer than 10 items' in t.get_text() for t in ax.get_legend().get_texts())

def dominant(rgba, box):
    "The commonest colour inside `box` (display coordinates, origin bottom left) of the drawn figure"
    h = rgba.shape[0]
    x0, x1, y0, y1 = int(box.x0) + 2, int(box.x1) - 2, int(h - box.y1) + 2, int(h - box.y0) - 2
    return Counter(map(tuple, rgba[y0:y1, x0:x1, :3].reshape(-1, 3))).most_common(1)[0][0]

def test_reliability_gap_in_the_legend_colour_both_ways():
    "An under-confident gap (over the bar) reads the colour of an over-confident one (over white), and the legend's"
    probs, targs = calibration_case()
    fig = reliability_diagram(probs, targs, n_bins=10)
    fig.set_dpi(150)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    ax = fig.axes[0]
    gaps = ax.containers[1]
    under, over = (gaps[j].get_window_extent() for j in (1, 2))  # the bins at 0.5 (all right) and at 0.9 (half right)
    leg = ax.get_legend()
    handle = next(h for h, t in zip(leg.legend_handles, leg.get_texts()) if t.get_text().startswith('Gap'))
    cu, co, cl = dominant(rgba, under), dominant(rgba, over), dominant(rgba, handle.get_window_extent())
    assert cu == co == cl, (cu, co, cl)
    assert min(cu) > 150  # a light pink, not the bar's blue showing through
