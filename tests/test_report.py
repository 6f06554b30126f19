"The HTML report: every section and every image there, the numbers in it checked against independent computations"
import base64, io
from html.parser import HTMLParser
import numpy as np, pandas as pd, pytest, torch
import torch.nn as nn
import torch.nn.functional as F
import sklearn.metrics as skm
from torchmetrics.functional.classification import multiclass_calibration_error
import matplotlib.pyplot as plt
from PIL import Image

from fastinterp.interpret import ClassificationInterpretation
from fastinterp.report import write_report
from conftest import raw_outputs, plain_learner, fit_quietly

class Page(HTMLParser):
    "Section ids, titles, images and table cells of a report"
    def __init__(self, text):
        super().__init__()
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

def summary_cards(page):
    "The headline cards: label -> (value, note)"
    text = [t for t in page.sections['summary'] if t.strip()][1:]  # the section's title first
    return {l: (v, n) for l, v, n in zip(text[0::3], text[1::3], text[2::3])}

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
                                   'most-confused', 'confusion-matrix', 'per-class', 'tta', 'calibration', 'files']
    assert plt.get_fignums() == []  # every figure closed once saved

def test_every_image_is_embedded_and_written_beside(labelled):
    path, page, _, _ = labelled
    pngs = decoded_pngs(page)
    assert [s for s, _, _ in pngs] == (['top-losses', 'most-uncertain'] + ['uncertain-per-class'] * 3 +
                                       ['confusion-matrix', 'calibration'])
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
    assert cards['ECE'][0] == f'{100 * ece:.2f}%'
    cal = page.table('calibration').set_index('measure').iloc[:, 0]
    assert cal['ECE'] == f'{100 * ece:.2f}%' and cal['MCE (worst bin)'] == f'{100 * mce:.2f}%'
    brier = ((probs - np.eye(10)[targs]) ** 2).sum(1).mean()
    assert float(cal['Brier score']) == pytest.approx(brier, abs=6e-5) and float(cal['NLL']) == pytest.approx(losses.mean(), abs=6e-5)
    # most confused pairs: sklearn's confusion matrix, off the diagonal, most first
    cm = skm.confusion_matrix(targs, probs.argmax(1), labels=range(10))
    np.fill_diagonal(cm, 0)
    mc = page.table('most-confused')
    assert mc['items'].astype(int).tolist() == sorted(cm[cm > 0].tolist(), reverse=True)[:15]
    for a, p, n in zip(mc['actual'], mc['predicted as'], mc['items']): assert cm[int(a), int(p)] == int(n)
    # per class: sklearn's precision and recall
    pc = page.table('per-class').set_index('class')
    prec, rec, _, sup = skm.precision_recall_fscore_support(targs, probs.argmax(1), labels=range(10), zero_division=0)
    np.testing.assert_allclose(pc.loc[[str(i) for i in range(10)], 'precision'].astype(float), prec, atol=5e-4)
    np.testing.assert_allclose(pc.loc[[str(i) for i in range(10)], 'recall'].astype(float), rec, atol=5e-4)
    # TTA: a row per pass, as Learner.tta reported them
    t = page.table('tta')
    assert t['pass'].tolist() == list(tta.index)
    # this learner has no augmentation: every pass, and so TTA's blend, is the plain softmax
    assert cards['TTA accuracy'] == (f'{100 * acc:.2f}%', '2 augmented passes; same items right as the plain pass')
    assert 'Every augmented pass equals the plain one' in ' '.join(page.sections['tta'])  # this learner has no augmentation

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
        assert float(pc.loc[f'{avg} avg', 'precision']) == pytest.approx(prec, abs=5e-4)
        assert float(pc.loc[f'{avg} avg', 'recall']) == pytest.approx(rec, abs=5e-4)
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
