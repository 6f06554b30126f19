"The HTML report: every section and every image there, the numbers in it checked against independent computations"
import base64, html, io, re
from html.parser import HTMLParser
import numpy as np, pandas as pd, pytest, torch
import torch.nn as nn
import torch.nn.functional as F
import sklearn.metrics as skm
from torchmetrics.functional.classification import multiclass_calibration_error
import matplotlib.pyplot as plt
from PIL import Image

import fastinterp
from fastinterp.interpret import ClassificationInterpretation
from fastinterp.report import write_report
from fastinterp.intervals import bootstrap_calibration
from scipy.stats import binomtest
from conftest import raw_outputs, plain_learner, fit_quietly

class Page(HTMLParser):
    "Section ids, titles, images and table cells of a report"
    def __init__(self, text):
        super().__init__()
        self.html = text
        self.sections, self.imgs, self.tables, self._sec, self._cell, self.text = {}, [], {}, None, None, []
        self.feed(text)
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == 'section': self._sec = a['id']; self.sections[self._sec] = []; self.tables.setdefault(self._sec, [])
        elif tag == 'img': self.imgs.append((self._sec, a['src']))
        elif tag == 'tr' and self._sec: self.tables[self._sec].append([])
        elif tag in ('td', 'th'): self._cell = []
    def handle_endtag(self, tag):
        if tag in ('td', 'th') and self._sec and self.tables[self._sec]:
            self.tables[self._sec][-1].append(''.join(self._cell).strip()); self._cell = None
    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None: self._cell.append(data)
        if self._sec: self.sections[self._sec].append(data)
    def table(self, sec):
        rows = self.tables[sec]
        return pd.DataFrame(rows[1:], columns=rows[0])

_CARD = re.compile(r'<div class="card"><div class="label">(.*?)</div><div class="value">(.*?)</div>'
                   r'(?:<div class="ci">(.*?)</div>)?<div class="note">(.*?)</div></div>')

def summary_cards(page, intervals=False):
    "The headline cards: label -> (value, note); with `intervals`, label -> the interval under the value ('' if none)"
    summary = page.html.split('<section id="summary">', 1)[1].split('</section>', 1)[0]
    un = html.unescape
    return {un(l): un(ci or '') if intervals else (un(v), un(n)) for l, v, ci, n in _CARD.findall(summary)}

def point(cell):
    "The number of a table cell that may carry its interval: '4.20% (95% CI 3.10% to 5.00%)' -> '4.20%'"
    return cell.split(' (')[0]

def interval(cell):
    "The interval of a cell, as two strings"
    return re.search(r'(?:CI |\()(\S+) to (\S+)\)', cell).groups()

def decoded_pngs(page):
    "Each embedded image decoded: (section, PNG bytes, PIL image)"
    res = []
    for sec, src in page.imgs:
        assert src.startswith('data:image/png;base64,'), src[:40]
        data = base64.b64decode(src.split(',', 1)[1], validate=True)
        res.append((sec, data, Image.open(io.BytesIO(data))))
    return res

@pytest.fixture(scope='module')
def labelled(digits_vision, tmp_path_factory):
    learn = digits_vision
    with learn.no_bar(): interp = ClassificationInterpretation.from_learner(learn)
    tta = learn.tta(n=2, progress=False).report
    stock = [('row sums (first 3)', '[-5.13, -4.51, -5.51]', '[1.00, 1.00, 1.00]')]
    out = tmp_path_factory.mktemp('report')
    path = write_report(interp, out, k=4, data='digits/valid', skipped=['broken/one.png'], stock=stock, tta=tta, max_classes=3)
    return path, Page(path.read_text()), interp, tta

def test_every_section_is_there(labelled):
    path, page, _, _ = labelled
    assert path.name == 'report.html'
    assert list(page.sections) == ['summary', 'stock', 'top-losses', 'most-uncertain', 'uncertain-per-class',
                                   'most-confused', 'confusion-matrix', 'per-class', 'label-issues', 'abstain', 'tta',
                                   'calibration', 'files']
    assert plt.get_fignums() == []  # every figure closed once saved

def test_every_image_is_embedded_and_written_beside(labelled):
    path, page, interp, _ = labelled
    pngs = decoded_pngs(page)
    issues = ['label-issues'] if interp.estimate_label_errors().count else []  # a gallery when there is one to show
    assert [s for s, _, _ in pngs] == (['top-losses', 'most-uncertain'] + ['uncertain-per-class'] * 3 +
                                       ['confusion-matrix'] + issues + ['abstain', 'calibration'])
    on_disk = sorted(path.parent.glob('*.png'))
    assert len(on_disk) == len(pngs)
    assert sorted(d for _, d, _ in pngs) == sorted(p.read_bytes() for p in on_disk)
    for _, _, im in pngs:
        assert im.format == 'PNG' and im.width > 200 and im.height > 150
    files = page.sections['files']
    assert all(p.name in ''.join(files) for p in on_disk) and 'predictions.csv' in ''.join(files)

def test_headline_and_tables_match_independent_computations(labelled, reference):
    path, page, interp, tta = labelled
    probs, targs, losses = reference
    acc = (probs.argmax(1) == targs).mean()
    cards = summary_cards(page)
    assert cards['Accuracy'] == (f'{100 * acc:.2f}%', f'{(probs.argmax(1) == targs).sum()} of {len(targs)} items right')
    unsure = int((probs.max(1) < 0.5).sum())
    assert cards['Unsure predictions'][0] == str(unsure) and f'({100 * unsure / len(targs):.2f}%)' in cards['Unsure predictions'][1]
    assert cards['Items'] == (f'{len(targs)}', '10 classes')
    # calibration: torchmetrics' ECE and MCE (15 equal-width bins), Brier score and NLL by hand
    p, t = torch.from_numpy(probs), torch.from_numpy(targs)
    ece = float(multiclass_calibration_error(p, t, num_classes=10, n_bins=15, norm='l1'))
    mce = float(multiclass_calibration_error(p, t, num_classes=10, n_bins=15, norm='max'))
    assert cards['ECE'] == (f'{100 * ece:.2f}%', f'calibration error on all {len(targs)} items, no temperature')
    # every headline number with its interval: Wilson's for accuracy, a seeded bootstrap for ECE
    ci = summary_cards(page, intervals=True)
    k = int((probs.argmax(1) == targs).sum())
    w = binomtest(k, len(targs)).proportion_ci(method='wilson')
    assert ci['Accuracy'] == f'95% CI {100 * w.low:.2f}% to {100 * w.high:.2f}%'
    lo, hi = bootstrap_calibration(p, t)['ece']
    assert ci['ECE'] == f'95% CI {100 * lo:.2f}% to {100 * hi:.2f}%' and lo <= ece <= hi
    raw = page.table('calibration').set_index('measure').iloc[:, 0]
    cal = raw.map(point)
    assert cal.name == f'all {len(targs)} items'
    # the worst bin, by hand: bin i holds confidences in [i/15, (i+1)/15), a confidence of 1 a bin of its own
    conf, right = probs.max(1), probs.argmax(1) == targs
    b = np.minimum(np.floor(conf.astype(np.float64) * 15), 15)
    gaps = {i: abs(right[b == i].mean() - conf[b == i].mean()) for i in np.unique(b)}
    worst = int((b == max(gaps, key=gaps.get)).sum())
    assert cal['ECE'] == f'{100 * ece:.2f}%'
    mce_cell = raw['MCE (the worst bin alone)']
    assert mce_cell.startswith(f"{100 * mce:.2f}% (95% CI ") and mce_cell.endswith(f" ({worst} item{'s' * (worst != 1)})")
    brier = ((probs - np.eye(10)[targs]) ** 2).sum(1).mean()
    assert float(cal['Brier score']) == pytest.approx(brier, abs=6e-5)
    assert float(cal['NLL (nats)']) == pytest.approx(losses.mean(), abs=6e-5)
    # most confused pairs: sklearn's confusion matrix, off the diagonal, most first
    cm = skm.confusion_matrix(targs, probs.argmax(1), labels=range(10))
    np.fill_diagonal(cm, 0)
    mc = page.table('most-confused')
    assert mc['items'].astype(int).tolist() == sorted(cm[cm > 0].tolist(), reverse=True)[:15]
    for a, p, n in zip(mc['given'], mc['predicted as'], mc['items']): assert cm[int(a), int(p)] == int(n)
    # per class: sklearn's precision and recall
    pc = page.table('per-class').set_index('class')
    prec, rec, _, sup = skm.precision_recall_fscore_support(targs, probs.argmax(1), labels=range(10), zero_division=0)
    rows = [str(i) for i in range(10)]
    np.testing.assert_allclose(pc.loc[rows, 'precision (95% CI)'].map(point).astype(float), prec, atol=5e-4)
    np.testing.assert_allclose(pc.loc[rows, 'recall (95% CI)'].map(point).astype(float), rec, atol=5e-4)
    for c, r, n in zip(rows, rec, sup):  # each recall's interval: Wilson's, of its class's items
        w = binomtest(round(r * n), int(n)).proportion_ci(method='wilson')
        assert interval(pc.loc[c, 'recall (95% CI)']) == (f'{w.low:.3f}', f'{w.high:.3f}')
    # TTA: a row per pass, as Learner.tta reported them
    t = page.table('tta')
    assert t['pass'].tolist() == list(tta.index)
    # this learner has no augmentation: every pass, and so TTA's blend, is the plain softmax
    assert cards['TTA accuracy'] == (f'{100 * acc:.2f}%', '2 augmented passes; same items right as the plain pass')
    assert 'Every augmented pass equals the plain one' in ' '.join(page.sections['tta'])  # this learner has no augmentation

@pytest.mark.parametrize('gain,said', [(-1, '1 item fewer right than the plain pass'),
                                        (3, '3 items more right than the plain pass')])
def test_tta_card_says_the_change_in_items_with_its_interval(labelled, tmp_path, gain, said):
    _, _, interp, tta = labelled
    n = len(interp.probs)
    tta = tta.copy()
    row = [i for i in tta.index if str(i).startswith('TTA')][0]
    tta.loc[row, 'accuracy'] = tta.loc['un-augmented', 'accuracy'] + gain / n
    page = Page(write_report(interp, tmp_path, k=4, tta=tta, max_classes=3).read_text())
    value, note = summary_cards(page)['TTA accuracy']
    right = round(tta.loc[row, 'accuracy'] * n)
    w = binomtest(right, n).proportion_ci(method='wilson')
    assert summary_cards(page, intervals=True)['TTA accuracy'] == f'95% CI {100 * w.low:.2f}% to {100 * w.high:.2f}%'
    # a few items on a few hundred: both Wilson intervals overlap, and the card says that this shows no change
    assert note == f'2 augmented passes; {said}; the intervals overlap: no clear difference'

def test_per_class_table_and_csv(labelled, reference):
    path, page, _, _ = labelled
    probs, targs, losses = reference
    ent = -(probs * np.log(np.clip(probs, 1e-30, 1))).sum(1) / np.log(10)
    t = page.table('uncertain-per-class')
    pred = probs.argmax(1)
    for c, n, m in zip(t['predicted class'], t['items'], t['mean entropy']):
        assert int(n) == (pred == int(c)).sum() and abs(float(m) - ent[pred == int(c)].mean()) < 6e-4
    assert [float(x) for x in t['mean entropy']] == sorted((float(x) for x in t['mean entropy']), reverse=True)
    assert 'the 3 classes with the highest mean entropy, of 10' in ' '.join(page.sections['uncertain-per-class'])
    df = pd.read_csv(path.parent/'predictions.csv')
    assert len(df) == len(targs)
    np.testing.assert_array_equal(df['target'], targs)
    np.testing.assert_allclose(df['loss'], losses, atol=1e-4)

def test_csv_has_every_class_probability(labelled, reference):
    "The README's 'probabilities': a column p(class) per class, beside p_pred and p_target"
    path, page, interp, _ = labelled
    probs, targs, _ = reference
    df = pd.read_csv(path.parent/'predictions.csv')
    cols = [f'p({c})' for c in range(10)]
    assert list(df.columns[:15]) == ['item', 'target', 'prediction', 'p_pred', 'p_target', *cols]
    np.testing.assert_allclose(df[cols].values, probs, atol=1e-6)
    np.testing.assert_allclose(df[cols].values, interp.probs.numpy(), atol=1e-6)
    np.testing.assert_allclose(df['p_target'], probs[np.arange(len(targs)), targs], atol=1e-6)
    assert 'p(0)</code> &hellip; <code>p(9)</code> (each class' in path.read_text()

def test_skipped_items_listed(labelled):
    _, page, _, _ = labelled
    assert 'broken/one.png' in ' '.join(page.sections['files'])
    assert '1 unreadable item(s) skipped' in ''.join(page.text)

def test_unlabelled_report_has_the_uncertainty_part_only(digits_vision, digits_path, tmp_path):
    learn = digits_vision
    files = sorted((digits_path/'valid').glob('[38]/*.png'))
    with learn.no_bar(): interp = ClassificationInterpretation.from_learner(learn, dl=learn.dls.test_dl(files))
    page = Page(write_report(interp, tmp_path, k=3).read_text())
    assert list(page.sections) == ['summary', 'most-uncertain', 'uncertain-per-class', 'files']
    assert 'Accuracy' not in ''.join(page.sections['summary']) and 'no labels' in ''.join(page.sections['summary'])
    assert len(decoded_pngs(page)) == 1 + len(set(interp.decoded.tolist()))
    df = pd.read_csv(tmp_path/'predictions.csv')
    assert len(df) == len(files) and 'target' not in df.columns
    np.testing.assert_allclose(df[[f'p({c})' for c in range(10)]].values, interp.probs.numpy(), atol=1e-6)

def test_per_class_report_leaves_out_classes_absent_from_the_data(digits_vision, digits_path, tmp_path):
    learn = digits_vision
    files = sorted((digits_path/'valid').glob('[38]/*.png'))
    with learn.no_bar(): interp = ClassificationInterpretation.from_learner(learn, dl=learn.dls.test_dl(files, with_labels=True))
    page = Page(write_report(interp, tmp_path, k=2).read_text())
    t, pred = np.array([int(f.parent.name) for f in files]), interp.decoded.numpy()
    pc = page.table('per-class').set_index('class')
    assert sorted(int(c) for c in pc.index if 'avg' not in c) == sorted(set(t) | set(pred))  # sklearn's default labels
    for avg in ('macro', 'weighted'):
        prec, rec, _, _ = skm.precision_recall_fscore_support(t, pred, average=avg, zero_division=0)
        assert float(pc.loc[f'{avg} avg', 'precision (95% CI)']) == pytest.approx(prec, abs=5e-4)
        assert float(pc.loc[f'{avg} avg', 'recall (95% CI)']) == pytest.approx(rec, abs=5e-4)
    assert f'The {10 - len(pc) + 2} class(es) neither in the data nor predicted are left out.' in ''.join(page.sections['per-class'])

def test_multilabel_report(digits_arrays, tmp_path):
    "Three labels of a digit (even, above 4, closed loop): exact-match accuracy and per-label scores, from the raw outputs by hand"
    X, y = digits_arrays
    Y = torch.stack([y % 2 == 0, y > 4, (y == 0) | (y == 6) | (y == 8) | (y == 9)], 1).float()
    learn = fit_quietly(plain_learner(X, Y, nn.BCEWithLogitsLoss(), 3), 3)
    with learn.no_bar(): interp = ClassificationInterpretation.from_learner(learn)
    page = Page(write_report(interp, tmp_path, k=4).read_text())
    assert list(page.sections) == ['summary', 'top-losses', 'most-uncertain', 'per-class', 'files']
    t = torch.cat([b[1] for b in learn.dls.valid]).bool().numpy()
    pred = (raw_outputs(learn, learn.dls.valid) > 0).numpy()  # sigmoid(z) > 0.5
    right = (pred == t).all(1)
    assert summary_cards(page)['Accuracy'] == (f'{100 * right.mean():.2f}%', f'{right.sum()} of {len(t)} items with every label right')
    assert 'entropy' not in ''.join(page.sections['most-uncertain']) and 'to the threshold' in ''.join(page.sections['most-uncertain'])
    pc = page.table('per-class').set_index('class')
    prec, rec, _, _ = skm.precision_recall_fscore_support(t, pred, zero_division=0)
    np.testing.assert_allclose(pc.loc[['0', '1', '2'], 'precision'].astype(float), prec, atol=5e-4)
    np.testing.assert_allclose(pc.loc[['0', '1', '2'], 'recall'].astype(float), rec, atol=5e-4)
    assert len(decoded_pngs(page)) == 2

def test_class_galleries_have_one_file_each(digits_arrays, tmp_path):
    "Names one slug merges ('caf?', 'cafè', 'café' are all 'caf'): a file of their own each, named by their index"
    X, y = digits_arrays
    learn = fit_quietly(plain_learner(X[y < 3], y[y < 3], nn.CrossEntropyLoss(), 3), 2)
    with learn.no_bar(): interp = ClassificationInterpretation.from_learner(learn)
    interp.vocab = ['caf?', 'cafè', 'café']
    assert sorted(set(interp.decoded.tolist())) == [0, 1, 2]  # a gallery for each
    path = write_report(interp, tmp_path/'rep', k=2)
    page = Page(path.read_text())
    names = [f'most_uncertain_{i}_caf.png' for i in range(3)]
    assert sorted(p.name for p in path.parent.glob('most_uncertain_*_*.png')) == names
    strips = [d for s, d, _ in decoded_pngs(page) if s == 'uncertain-per-class']
    assert sorted(strips) == sorted((path.parent/n).read_bytes() for n in names) and len(set(strips)) == 3
    listed = re.findall(r'<li><a href="([^"]+)">', path.read_text())
    assert len(listed) == len(set(listed)) and set(names) <= set(listed)

class WrittenOver(ClassificationInterpretation):
    "An interpretation that lets another report be written into the same folder while its own is half written"
    during = None
    def plot_top_losses(self, *args, **kwargs):
        if self.during is not None: during, self.during = self.during, None; during()
        return super().plot_top_losses(*args, **kwargs)

def assert_whole(out, interp):
    "`out` holds one whole report, of `interp`: its page, its predictions, its images and nothing else"
    text = (out/'report.html').read_text()
    pngs = {p.name: p.read_bytes() for p in out.glob('*.png')}
    assert {p.name for p in out.iterdir()} == {'report.html', 'predictions.csv', *pngs}
    assert sorted(d for _, d, _ in decoded_pngs(Page(text))) == sorted(pngs.values())
    assert sorted(re.findall(r'<li><a href="([^"]+)">', text)) == sorted(['predictions.csv', *pngs])
    assert pd.read_csv(out/'predictions.csv')['item'].tolist() == [str(f) for f in interp.dl.items]
    assert f'{len(interp.dl.items)} items' in text

def test_a_report_is_written_whole(digits_vision, digits_path, tmp_path):
    "Written beside its folder, renamed to it: another report written at the same time, or an older one, never mixes in"
    learn = digits_vision
    dl_of = lambda g: learn.dls.test_dl(sorted((digits_path/'valid').glob(f'{g}/*.png')), with_labels=True)
    with learn.no_bar():
        a = WrittenOver.from_learner(learn, dl=dl_of('[38]'))
        b = ClassificationInterpretation.from_learner(learn, dl=dl_of('[17]'))
    out = tmp_path/'rep'
    a.during = lambda: write_report(b, out, k=2)  # b is written, whole, while a is half written
    write_report(a, out, k=3)
    assert a.during is None  # b was written meanwhile
    assert_whole(out, a)
    assert [p.name for p in tmp_path.iterdir()] == ['rep']  # no folder left behind
    write_report(b, out, k=2)  # over an older report: a's galleries of its classes 3 and 8 go with it
    assert_whole(out, b)
    assert [p.name for p in tmp_path.iterdir()] == ['rep']

def test_a_folder_that_is_not_a_report_is_refused(digits_vision, digits_path, tmp_path, monkeypatch):
    "A report replaces its folder whole: a folder of other files, or a file, is refused and left as it was"
    learn = digits_vision
    with learn.no_bar(): interp = ClassificationInterpretation.from_learner(learn, dl=learn.dls.test_dl(
        sorted((digits_path/'valid').glob('3/*.png'))[:8]))
    (tmp_path/'mine').mkdir(); (tmp_path/'mine'/'notes.txt').write_text('mine')
    with pytest.raises(ValueError, match=r"mine holds files that are not a report's \(notes.txt\), and a report"):
        write_report(interp, tmp_path/'mine')
    (tmp_path/'file').write_text('mine')
    with pytest.raises(ValueError, match='file is a file, not a folder'): write_report(interp, tmp_path/'file')
    assert (tmp_path/'mine'/'notes.txt').read_text() == (tmp_path/'file').read_text() == 'mine'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['file', 'mine']
    (tmp_path/'empty').mkdir()
    monkeypatch.chdir(tmp_path/'empty')  # renamed away, the current folder would leave its shell in a deleted folder
    with pytest.raises(ValueError, match='empty is the current folder or holds it'): write_report(interp, '.')
    monkeypatch.chdir(tmp_path)
    assert write_report(interp, tmp_path/'empty', k=2) == tmp_path/'empty'/'report.html'

class SumOnly(nn.Module):
    "A loss that takes no `reduction`: no per-item losses"
    def forward(self, out, targ): return F.cross_entropy(out, targ)

def test_report_without_per_item_losses(digits_arrays, tmp_path):
    "The top losses say why they are missing, every other section is there"
    fastinterp.register_activation(SumOnly, 'softmax', kind='multiclass')
    X, y = digits_arrays
    learn = fit_quietly(plain_learner(X, y, SumOnly(), 10), 1)
    with learn.no_bar(), pytest.warns(UserWarning, match='no `reduction` argument'):
        interp = ClassificationInterpretation.from_learner(learn)
    page = Page(write_report(interp, tmp_path, k=2).read_text())
    assert 'No per-item losses' in ''.join(page.sections['top-losses'])
    assert 'calibration' in page.sections and 'loss' not in pd.read_csv(tmp_path/'predictions.csv').columns
