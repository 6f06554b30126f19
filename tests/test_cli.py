"The `fastinterp` command: `demo` and `report` end to end, and one clear line for every bad input"
import os, re, subprocess, sys, textwrap, warnings
import numpy as np, pandas as pd, pytest, torch

import torch.nn as nn
import torch.nn.functional as F
from fastai.learner import load_learner
from fastai.losses import MSELossFlat
from torchmetrics.functional.classification import multiclass_calibration_error

from scipy.optimize import minimize_scalar

from fastinterp.cli import main, _temperature
from conftest import raw_outputs
from test_report import Page, point, summary_cards

def run(argv, capsys):
    "Run the command in this process: (exit status, stdout, stderr)"
    try: main([str(a) for a in argv]); code = 0
    except SystemExit as e: code = e.code
    out, err = capsys.readouterr()
    return code, out, err

def report_files(out):
    return {'report.html', 'predictions.csv', 'top_losses.png', 'most_uncertain.png', 'confusion_matrix.png'} <= {p.name for p in out.iterdir()}

def test_demo_writes_the_report_and_prints_the_comparison(digits_path, tmp_path, capsys):
    code, text, _ = run(['demo', '--out', tmp_path/'rep', '--data', digits_path, '--epochs', 1, '--tta', 2, '--k', 4], capsys)
    assert code == 0 and report_files(tmp_path/'rep')
    rows = {l.split('  ')[1].strip(): l for l in text.splitlines() if l.startswith('  ') and l.strip()}
    assert '[1.00, 1.00, 1.00]' in rows['row sums (first 3)']
    stock, ours = (v.split(', ') for v in re.findall(r'\[([^\]]*)\]', rows['probs[0][:4]'])[-2:])
    assert len(stock) == len(ours) == 4 and any(float(v) < 0 for v in stock)  # logits
    assert not {'0.00', '1.00'} & set(ours)  # digits trained one epoch: no probability is exactly 0 or 1
    assert rows['values in [0, 1]'].split()[-2:] == ['False', 'True']
    acc = float(rows['accuracy of decoded'].split()[-1])
    assert 0.5 < acc <= 1 and 'n/a' in rows['accuracy of decoded']
    assert 'activation used: softmax' in text
    html = (tmp_path/'rep'/'report.html').read_text()
    assert 'What stock fastai shows' in html and 'Test-time augmentation' in html and 'pass 2' in html
    assert 'Temperature scaling' in html and 'ECE before temperature' in html and 'ECE after temperature' in html
    assert re.search(r'Temperature scaling: T = \S+ fitted on 179 items; ECE on the other 180: \S+% with no '
                     r'temperature, \S+% at T = ', text)
    assert f"Report: {(tmp_path/'rep'/'report.html').resolve()}" in text

def test_command_line_rejects_an_unknown_loss():
    "argparse's own errors too: one line, exit status 1, as the README promises for bad input"
    r = subprocess.run([sys.executable, '-m', 'fastinterp.cli', 'demo', '--loss', 'nope'], capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout == '' and r.stderr.count('\n') == 1
    assert r.stderr.startswith("fastinterp demo: error: argument --loss: invalid choice: 'nope'")

@pytest.fixture(scope='module')
def exported(digits_vision, tmp_path_factory):
    "The session's digits CNN exported, and its accuracy on the validation set computed by hand"
    path = tmp_path_factory.mktemp('learner')/'digits.pkl'
    digits_vision.export(path)
    raw = raw_outputs(digits_vision, digits_vision.dls.valid)
    targs = torch.cat([b[1] for b in digits_vision.dls.valid]).cpu().as_subclass(torch.Tensor)
    return path, float((raw.argmax(1) == targs).float().mean())

def test_report_on_a_labelled_folder(exported, digits_path, tmp_path, capsys):
    pkl, acc = exported
    code, text, err = run(['report', pkl, digits_path/'valid', '--out', tmp_path, '--k', 3, '--tta', 1], capsys)
    assert code == 0 and report_files(tmp_path)
    assert f"accuracy {acc:.4f} on 359 items" in text and 'pass 1' in text
    df = pd.read_csv(tmp_path/'predictions.csv')
    assert len(df) == 359 and (df['target'] == df['prediction']).mean() == pytest.approx(acc)

def test_temperature_fitted_on_one_half_measured_on_the_other(digits_vision, digits_path):
    learn = digits_vision
    items = sorted((digits_path/'valid').glob('*/*.png'))
    dl_of = lambda fs, _: learn.dls.test_dl(fs, with_labels=True)
    before = dict(vars(learn))
    res = _temperature(learn, dl_of, items, None, print)
    assert ('temperature' in vars(learn), vars(learn).get('temperature')) == ('temperature' in before, before.get('temperature'))  # left as it was
    idx = np.random.default_rng(0).permutation(len(items))
    fit, held = ([items[i] for i in sorted(h)] for h in (idx[:len(idx) // 2], idx[len(idx) // 2:]))
    assert (res['n_fit'], res['n_eval']) == (len(fit), len(held))
    raw = {k: raw_outputs(learn, dl_of(v, None)) for k, v in (('fit', fit), ('held', held))}
    t = {k: torch.tensor([int(f.parent.name) for f in v]) for k, v in (('fit', fit), ('held', held))}
    T = res['T']
    nll = lambda x: float(F.cross_entropy(raw['fit'] / x, t['fit']))
    assert nll(T) <= min(nll(T * 1.02), nll(T / 1.02))  # least NLL on the half it was fitted on
    for key, temp in (('before', 1.), ('after', T)):
        ece = multiclass_calibration_error(torch.softmax(raw['held'] / temp, 1), t['held'], num_classes=10, n_bins=15)
        assert res[key]['ece'] == pytest.approx(float(ece), abs=1e-5)
    assert _temperature(learn, dl_of, items[:39], None, print) is None  # too few items to split

def test_temperature_warning_is_a_line_of_output(digits_vision, digits_path):
    "T fitted on items that are all predicted right runs to its bound: the command says so in a line, not a Python warning"
    learn = digits_vision
    items = sorted((digits_path/'valid').glob('*/*.png'))
    raw = raw_outputs(learn, learn.dls.test_dl(items))
    right = [f for f, c in zip(items, raw.argmax(1).tolist()) if c == int(f.parent.name)]
    lines = []
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter('always')
        res = _temperature(learn, lambda fs, _: learn.dls.test_dl(fs, with_labels=True), right, None, lines.append)
    assert not [w for w in escaped if issubclass(w.category, UserWarning)]
    assert 'Temperature scaling: Every held-out item is predicted right' in lines[0] and res['T'] == pytest.approx(0.01)
    assert 'temperature' not in vars(learn)

def test_report_of_a_learner_exported_with_a_temperature(digits_vision, digits_path, tmp_path, capsys):
    "One ECE story: each ECE says its items and temperature (the page's: T = 1.5); ECEs compared are of the same items"
    learn = digits_vision
    learn.temperature = 1.5
    try: learn.export(tmp_path/'tempered.pkl')
    finally: del learn.temperature
    code, text, err = run(['report', tmp_path/'tempered.pkl', digits_path/'valid', '--out', tmp_path/'rep', '--k', 2], capsys)
    assert code == 0, err
    page = Page((tmp_path/'rep'/'report.html').read_text())
    assert "probabilities tempered: softmax of the outputs / T, the learner's T = 1.5" in ''.join(page.text)
    items = sorted((digits_path/'valid').glob('*/*.png'))
    raw = raw_outputs(learn, learn.dls.test_dl(items, with_labels=True))
    t = torch.tensor([int(f.parent.name) for f in items])
    idx = np.random.default_rng(0).permutation(len(items))
    fit, held = (torch.from_numpy(np.sort(h)) for h in (idx[:len(idx) // 2], idx[len(idx) // 2:]))
    T = minimize_scalar(lambda T: float(F.cross_entropy(raw[fit].double() / T, t[fit])), bounds=(0.01, 100),
                        method='bounded', options=dict(xatol=1e-9)).x
    ece = lambda T, i: f"{100 * float(multiclass_calibration_error(torch.softmax(raw[i] / T, 1), t[i], 10)):.2f}%"
    everything = torch.arange(len(items))
    cards = summary_cards(page)
    assert cards["ECE at the learner's T"] == (ece(1.5, held), f"calibration error on {len(held)} held-out items, "
                                                               f"the learner's T = 1.5")
    value, note = cards['ECE at a refitted T']
    assert value == ece(T, held) and note.startswith(f'the same {len(held)} items at T = {T:.3g}, '
                                                     f'fitted on the other {len(fit)}')
    # two ECEs whose intervals overlap are not shown as a difference
    ci = summary_cards(page, intervals=True)
    lims = [tuple(map(float, re.search(r'CI ([\d.]+)% to ([\d.]+)%', ci[c]).groups())) for c in
            ("ECE at the learner's T", 'ECE at a refitted T')]
    overlap = lims[0][0] <= lims[1][1] and lims[1][0] <= lims[0][1]
    assert note.endswith('the intervals overlap: no clear change in calibration') == overlap
    cal = page.table('calibration').set_index('measure').map(point)
    assert list(cal.columns) == [f'all {len(items)} items', f"{len(held)} held-out, the learner's T = 1.5",
                                 f'{len(held)} held-out, T = {T:.3g}']
    assert cal.loc['ECE'].tolist() == [ece(1.5, everything), ece(1.5, held), ece(T, held)]
    assert (f"ECE on the other {len(held)}: {ece(1.5, held)} at the learner's T = 1.5, "
            f"{ece(T, held)} at T = {T:.3g}") in text
    df = pd.read_csv(tmp_path/'rep'/'predictions.csv')
    dl = learn.dls.test_dl([digits_path/'valid'/f for f in df['item']], with_labels=True)
    np.testing.assert_allclose(df['p_pred'], torch.softmax(raw_outputs(learn, dl) / 1.5, 1).max(1).values, atol=1e-5)

@pytest.fixture(scope='module')
def flat_csv(digits_path, tmp_path_factory):
    "A CSV of item and label columns over a flat folder (no class folders: labels come from the CSV alone), one file broken"
    d = tmp_path_factory.mktemp('flat')
    files = sorted((digits_path/'valid').glob('*/*.png'))[::3]
    for f in files: (d/'img'/f.name).parent.mkdir(exist_ok=True); (d/'img'/f.name).write_bytes(f.read_bytes())
    (d/'img'/'broken.png').write_bytes(b'not a png')
    rows = [(f'img/{f.name}', f.parent.name) for f in files] + [('img/broken.png', '3')]
    pd.DataFrame(rows, columns=['file', 'digit']).to_csv(d/'labels.csv', index=False)
    return d/'labels.csv', [int(f.parent.name) for f in files]

def test_report_on_a_csv_skips_unreadable_images(exported, flat_csv, tmp_path, capsys):
    pkl, _ = exported
    csv, targs = flat_csv
    code, text, err = run(['report', pkl, csv, '--out', tmp_path, '--k', 3], capsys)
    assert code == 0 and report_files(tmp_path), err
    assert f"{csv}: image paths from column 'file', labels from column 'digit' (its first row is the header)" in text
    assert f"{len(targs)} images from {csv}; 1 could not be read and are skipped" in text
    df = pd.read_csv(tmp_path/'predictions.csv')
    np.testing.assert_array_equal(df['target'], targs)
    assert 'broken.png' in (tmp_path/'report.html').read_text()

def test_csv_without_a_header_keeps_its_first_row(exported, flat_csv, tmp_path, capsys):
    "Its first row names an image: it is an item, not a header whose image would be neither used nor listed as skipped"
    pkl, _ = exported
    csv, targs = flat_csv
    rows = pd.read_csv(csv, dtype=str)[:20]
    rows.to_csv(csv.parent/'nohdr.csv', index=False, header=False)
    code, text, err = run(['report', pkl, csv.parent/'nohdr.csv', '--out', tmp_path/'rep', '--k', 2], capsys)
    assert code == 0, err
    assert (f"{csv.parent/'nohdr.csv'}: no header row (its first row is an image): image paths from column 1, "
            f"labels from column 2") in text
    assert f"20 images from {csv.parent/'nohdr.csv'}\n" in text
    df = pd.read_csv(tmp_path/'rep'/'predictions.csv')
    assert df['item'].tolist() == [str(csv.parent/f) for f in rows['file']]
    np.testing.assert_array_equal(df['target'], targs[:20])
    # a first row naming an image that is not there is an item too: skipped and listed, not taken as the header
    gone = pd.concat([pd.DataFrame({'file': ['img/gone.png'], 'digit': ['3']}), rows])
    gone.to_csv(csv.parent/'gone.csv', index=False, header=False)
    code, text, err = run(['report', pkl, csv.parent/'gone.csv', '--out', tmp_path/'rep', '--k', 2], capsys)
    assert code == 0 and f"20 images from {csv.parent/'gone.csv'}; 1 could not be read and are skipped" in text
    assert 'gone.png' in (tmp_path/'rep'/'report.html').read_text()
    # no header: no column has a name to choose
    code, _, err = run(['report', pkl, csv.parent/'nohdr.csv', '--out', tmp_path/'rep', '--label-col', 'digit'], capsys)
    assert code == 1 and err.count('\n') == 1 and 'has no header row (its first row is an image, img/' in err

def test_unlabelled_csv_may_have_blank_labels(exported, flat_csv, tmp_path, capsys):
    "--unlabelled ignores the labels, blank ones too (they were refused, with the advice to pass --unlabelled)"
    pkl, _ = exported
    csv, targs = flat_csv
    pd.read_csv(csv, dtype=str).assign(digit='').to_csv(csv.parent/'blank.csv', index=False)
    argv = ['report', pkl, csv.parent/'blank.csv', '--out', tmp_path/'rep', '--k', 2, '--unlabelled']
    code, text, err = run(argv, capsys)
    assert code == 0, err
    assert "image paths from column 'file', no labels (--unlabelled)" in text
    assert len(pd.read_csv(tmp_path/'rep'/'predictions.csv')) == len(targs)

def test_report_unlabelled(exported, digits_path, flat_csv, tmp_path, capsys):
    pkl, _ = exported
    csv, targs = flat_csv
    for argv, n in [([csv.parent/'img'], len(targs)), ([csv, '--label-col', 'file', '--unlabelled'], len(targs)),
                    ([csv.parent, '--unlabelled'], len(targs))]:  # a loose CSV beside the img/ folder: no class folders needed
        code, text, err = run(['report', pkl, *argv, '--out', tmp_path, '--k', 2], capsys)
        assert code == 0, err
        assert 'no labels: the uncertainty part only' in text
        html = (tmp_path/'report.html').read_text()
        assert 'id="most-uncertain"' in html and 'id="top-losses"' not in html and 'id="confusion-matrix"' not in html
        assert len(pd.read_csv(tmp_path/'predictions.csv')) == n

CUSTOM = """
import torch.nn as nn
import torch.nn.functional as F
class MyLoss(nn.CrossEntropyLoss): pass
class Plain(nn.Module):
    def forward(self, out, targ, reduction='mean'): return F.cross_entropy(out, targ, reduction=reduction)
class SumOnly(nn.Module):
    def forward(self, out, targ): return F.cross_entropy(out, targ)
import fastinterp
fastinterp.register_activation(SumOnly, 'softmax', kind='multiclass')
"""

@pytest.fixture(scope='module')
def custom_loss_learners(digits_path, tmp_path_factory):
    "Learners exported with a custom loss class: defined in a module of their folder, and defined in `__main__` (plain pickle)"
    d = tmp_path_factory.mktemp('custom')
    (d/'mylosses.py').write_text(CUSTOM)
    (d/'register_plain.py').write_text("import fastinterp, mylosses\n"
                                       "fastinterp.register_activation(mylosses.Plain, 'softmax', kind='multiclass')\n")
    (d/'export_them.py').write_text(CUSTOM + textwrap.dedent(f"""
        import pickle
        import mylosses
        from fastinterp.data import digits_learner
        digits_learner({str(digits_path)!r}, loss_func=mylosses.MyLoss()).export({str(d/'module.pkl')!r})
        digits_learner({str(digits_path)!r}, loss_func=mylosses.Plain()).export({str(d/'plain.pkl')!r})
        digits_learner({str(digits_path)!r}, loss_func=mylosses.SumOnly()).export({str(d/'sumonly.pkl')!r})
        digits_learner({str(digits_path)!r}, loss_func=mylosses.Plain(), final=nn.Softmax(1)).export(
            {str(d/'softmaxed.pkl')!r})
        # fastai 2.8 exports with cloudpickle, which copies a class of __main__ into the file; plain pickle (older fastai) does not
        digits_learner({str(digits_path)!r}, loss_func=MyLoss()).export({str(d/'main.pkl')!r}, pickle_module=pickle)
        """))
    subprocess.run([sys.executable, 'export_them.py'], cwd=d, check=True, capture_output=True)
    return d

@pytest.mark.parametrize('pkl, message', [
    ('module.pkl', 'needs module mylosses (where MyLoss, which the learner was exported with, is defined), which cannot be '
                   'imported here: run from its folder with --import mylosses, or add its folder to PYTHONPATH'),
    ('main.pkl', 'needs MyLoss, defined in the script or notebook that exported the learner (__main__) and not here: '
                 'put it in a module (e.g. mycode.py) and pass --import mycode')])
def test_custom_loss_needs_import(custom_loss_learners, digits_path, tmp_path, capsys, monkeypatch, pkl, message):
    d = custom_loss_learners
    code, _, err = run(['report', d/pkl, digits_path/'valid', '--out', tmp_path], capsys)
    assert code == 1 and err.count('\n') == 1 and message in err
    monkeypatch.chdir(d)
    monkeypatch.setattr(sys, 'path', list(sys.path))
    main_vars = set(vars(sys.modules['__main__']))
    try: code, text, err = run(['report', d/pkl, digits_path/'valid', '--out', tmp_path, '--k', 2, '--import', 'mylosses'], capsys)
    finally:
        for k in set(vars(sys.modules['__main__'])) - main_vars: delattr(sys.modules['__main__'], k)
        sys.modules.pop('mylosses', None)
    assert code == 0, err
    assert 'accuracy' in text and 'MyLoss' in (tmp_path/'report.html').read_text()

@pytest.fixture
def custom_here(custom_loss_learners, monkeypatch):
    "Run from the folder of the custom losses; sys.path, __main__ and sys.modules are left as they were"
    monkeypatch.chdir(custom_loss_learners)
    monkeypatch.setattr(sys, 'path', list(sys.path))
    main_vars = set(vars(sys.modules['__main__']))
    yield custom_loss_learners
    for k in set(vars(sys.modules['__main__'])) - main_vars: delattr(sys.modules['__main__'], k)
    for m in ('mylosses', 'register_plain'): sys.modules.pop(m, None)

def test_unknown_loss_says_what_the_command_user_can_do(custom_here, digits_path, tmp_path, capsys):
    "A loss fastinterp does not know: the command has no act=, its user can --import a module that registers the loss"
    d = custom_here
    argv = ['report', d/'plain.pkl', digits_path/'valid', '--out', tmp_path/'rep', '--k', 2, '--import', 'mylosses']
    code, _, err = run(argv, capsys)
    assert code == 1 and err.count('\n') == 1 and 'act=' not in err
    assert err.startswith(f"fastinterp report: error: {d/'plain.pkl'} was trained with the loss Plain, whose "
                          f"final activation fastinterp does not know, and the model's outputs are not "
                          f"probabilities: --import a module of yours that registers its activation, e.g. with "
                          f"fastinterp.register_activation(mylosses.Plain, 'softmax', kind='multiclass')")
    # outputs that are probabilities already: taken as they are, and the command says so
    code, text, err = run(['report', d/'softmaxed.pkl', *argv[2:]], capsys)
    assert code == 0 and err == '', err
    assert ("Note: fastinterp does not know the final activation of the loss Plain, so the model's outputs, which "
            "lie in [0, 1], are taken as probabilities as they are. If they are not: --import a module") in text
    assert 'Temperature scaling skipped: it divides logits' in text
    code, text, err = run(argv + ['--import', 'register_plain'], capsys)
    assert code == 0 and err == '', err
    assert 'softmax' in (tmp_path/'rep'/'report.html').read_text()

def test_a_warning_is_one_line(custom_here, digits_path, tmp_path, capsys):
    "A loss with no per-item losses: a one-line warning, and a report without top losses (it was a traceback)"
    argv = ['report', custom_here/'sumonly.pkl', digits_path/'valid', '--out', tmp_path/'rep', '--k', 2,
            '--import', 'mylosses']
    code, text, err = run(argv, capsys)
    assert code == 0 and err.count('\n') == 1, err
    assert err.startswith('fastinterp report: warning: ') and 'takes no `reduction` argument' in err
    assert 'No per-item losses' in (tmp_path/'rep'/'report.html').read_text()
    assert 'Temperature scaling: T = ' in text

@pytest.fixture(scope='module')
def bad(exported, digits_path, tmp_path_factory):
    "A folder of bad inputs"
    d = tmp_path_factory.mktemp('bad')
    torch.save({'weights': torch.zeros(3)}, d/'dict.pkl')
    torch.save(nn.Linear(2, 2).state_dict(), d/'weights.pth')
    (d/'text.pkl').write_text('hello')
    (d/'zero.pkl').touch()
    (d/'a file').touch()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # load_learner's warning about pickle
        regressor = load_learner(exported[0])
    regressor.loss_func = MSELossFlat()
    regressor.export(d/'regressor.pkl')
    (d/'empty').mkdir()
    (d/'broken').mkdir(); (d/'broken'/'a.png').write_bytes(b'nope'); (d/'broken'/'b.jpg').write_bytes(b'')
    pd.DataFrame({'file': [str(f) for f in sorted((digits_path/'valid'/'3').glob('*.png'))[:4]],
                  'label': ['cat', 'dog', '3', 'cat']}).to_csv(d/'unknown.csv', index=False)
    pd.DataFrame({'file': [str(next((digits_path/'valid'/'3').glob('*.png')))], 'label': ['']}).to_csv(d/'nolabel.csv', index=False)
    (d/'mixed'/'3').mkdir(parents=True)
    for f in sorted((digits_path/'valid'/'3').glob('*.png'))[:2]: (d/'mixed'/'3'/f.name).write_bytes(f.read_bytes())
    (d/'mixed'/'loose.png').write_bytes(f.read_bytes())
    return d

@pytest.mark.parametrize('learner, data, extra, message', [
    ('missing.pkl', 'valid', [], 'no such file: {d}/missing.pkl'),
    ('.', 'valid', [], 'is a folder; give the file written by learn.export()'),
    ('dict.pkl', 'valid', [], 'holds a dict, not a fastai Learner saved with learn.export()'),
    ('text.pkl', 'valid', [], '{d}/text.pkl is not a file written by learn.export(): it cannot be unpickled (UnpicklingError'),
    ('zero.pkl', 'valid', [], '{d}/zero.pkl is empty (0 bytes)'),
    ('weights.pth', 'valid', [], 'holds a collections.OrderedDict, not a fastai Learner saved with learn.export() (learn.save and'),
    ('regressor.pkl', 'valid', [], '{d}/regressor.pkl is a regression learner (loss BaseLoss(MSELoss)): the report is for classifiers'),
    ('LEARN', 'missing', [], 'no such file or folder: {d}/missing'),
    ('LEARN', 'empty', [], 'no images in {d}/empty'),
    ('LEARN', 'broken', [], 'none of the 2 images listed in {d}/broken can be read (e.g. {d}/broken/a.png: not an image PIL can open)'),
    ('LEARN', 'a file', [], "cannot read {d}/a file as a CSV (No columns to parse from file); DATA is an image folder or a CSV"),
    ('LEARN', 'valid', ['--out', 'OUTFILE'], '--out {d}/a file is a file, not a folder'),
    ('LEARN', 'valid', ['--out', 'NOTREPORT'], "--out {d}/mixed holds files that are not a report's (3, loose.png), "
                                               "and a report replaces its folder whole: choose a new or empty folder"),
    ('LEARN', 'unknown.csv', [], "labels the learner does not know: 'cat', 'dog' (it knows '0', '1',"),
    ('LEARN', 'unknown.csv', ['--label-col', 'digit'], "has no column 'digit' (--label-col); its columns: file, label"),
    ('LEARN', 'nolabel.csv', [], "1 row(s) of {d}/nolabel.csv have no label in column 'label'"),
    ('LEARN', 'mixed', [], '1 image(s) sit directly in {d}/mixed, outside any class folder (e.g. loose.png)'),
    ('LEARN', 'valid', ['--import', 'no_such_module_here'], 'cannot import no_such_module_here (--import): ModuleNotFoundError'),
])
def test_bad_input_is_one_line_and_exit_1(bad, exported, digits_path, tmp_path, capsys, learner, data, extra, message):
    learner = exported[0] if learner == 'LEARN' else bad/learner
    data = digits_path/'valid' if data == 'valid' else bad/data
    extra = [{'OUTFILE': bad/'a file', 'NOTREPORT': bad/'mixed'}.get(a, a) for a in extra]
    code, out, err = run(['report', learner, data, '--out', tmp_path/'rep', *extra], capsys)
    assert code == 1
    assert err.count('\n') == 1 and err.startswith('fastinterp report: error: ') and 'Traceback' not in err
    assert message.format(d=bad) in err
    assert not (tmp_path/'rep').exists()

def test_bad_input_from_the_console_script(tmp_path):
    "The installed command, in a fresh process: one line on stderr, exit 1 (fastai's own import-time FutureWarning aside)"
    exe = os.path.join(os.path.dirname(sys.executable), 'fastinterp')
    r = subprocess.run([exe, 'report', str(tmp_path/'nope.pkl'), str(tmp_path)], capture_output=True, text=True,
                       env={**os.environ, 'PYTHONWARNINGS': 'ignore::FutureWarning'})
    assert r.returncode == 1 and r.stdout == ''
    assert r.stderr == f"fastinterp report: error: no such file: {tmp_path/'nope.pkl'}\n"

@pytest.mark.parametrize('argv, msg', [
    (['demo', '--k', '0'], 'fastinterp demo: error: --k must be a whole number, 1 or more, got 0'),
    (['demo', '--k', '-1'], 'fastinterp demo: error: --k must be a whole number, 1 or more, got -1'),
    (['report', 'x.pkl', 'd', '--tta', '-3'], 'report: error: --tta must be a whole number, 0 or more, got -3'),
    (['report', 'x.pkl', 'd', '--k', '0'], 'fastinterp report: error: --k must be a whole number, 1 or more, got 0'),
    (['demo', '--epochs', '0'], 'fastinterp demo: error: --epochs must be a whole number, 1 or more, got 0'),
    (['report', 'x.pkl'], 'report: error: the following arguments are required: DATA (see fastinterp report --help)'),
    (['demo', '--k', 'many'], "fastinterp demo: error: argument --k: invalid int value: 'many'"),
    (['report', 'x.pkl', 'd', '--frobnicate'], 'fastinterp report: error: unrecognized arguments: --frobnicate (see '
                                               'fastinterp report --help)'),
    ([], 'fastinterp: error: the following arguments are required: {demo,report}')])
def test_bad_arguments_are_one_line_and_exit_1(argv, msg, capsys):
    "Checked before anything is loaded: x.pkl and d need not exist"
    code, out, err = run(argv, capsys)
    assert code == 1 and out == '' and err.count('\n') == 1 and msg in err and 'usage:' not in err

def test_bad_numbers_from_python_too(digits_path, tmp_path):
    "demo() and report() check their numbers themselves: the command line is not the only way in"
    from fastinterp.cli import BadInput, demo, report
    with pytest.raises(BadInput, match='--k must be a whole number, 1 or more, got 0'):
        report('x.pkl', digits_path, tmp_path, k=0)
    with pytest.raises(BadInput, match='--epochs must be a whole number'): demo(tmp_path/'rep', digits_path, epochs=0)

def test_demo_data_that_is_not_a_folder(bad, tmp_path, capsys):
    code, _, err = run(['demo', '--data', bad/'a file', '--out', tmp_path/'rep'], capsys)
    assert code == 1 and err == f"fastinterp demo: error: cannot write the digits into {bad/'a file'} (--data): Not a directory\n"
    assert not (tmp_path/'rep').exists()
