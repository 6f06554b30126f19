"The `fastinterp` command: `demo` trains on the digits and writes a report; `report` does it for an exported learner"

__all__ = ['main', 'demo', 'report', 'read_items', 'read_rows', 'read_masks', 'labelled_dl', 'BadInput']

import argparse, contextlib, importlib, pickle, re, sys, tempfile, types, warnings
from pathlib import Path
import numpy as np

LOSSES = {  # --loss choices: how users commonly write a classification loss
    'ce':       lambda: __import__('torch').nn.CrossEntropyLoss(),
    'ce-fn':    lambda: __import__('torch').nn.functional.cross_entropy,
    'ce-flat':  lambda: __import__('fastai.losses', fromlist=['x']).CrossEntropyLossFlat(),
    'focal':    lambda: __import__('fastai.losses', fromlist=['x']).FocalLoss(),
}
DEFAULT_OUT = 'fastinterp-report'
# Mild enough for 8x8 digits that the augmented passes of TTA stay close to the plain one
DEMO_AUG = dict(do_flip=False, max_rotate=8., max_zoom=1.05, max_warp=0., max_lighting=0.1, p_affine=0.5)

class BadInput(Exception):
    """Input the command cannot use: reported as one line on stderr, exit status 1

    >>> raise BadInput('the learner file does not exist')
    Traceback (most recent call last):
    fastinterp.cli.BadInput: the learner file does not exist
    """

class _Parser(argparse.ArgumentParser):
    "argparse's parser, whose errors are one line on stderr and exit status 1, as every other bad input of the command"
    def error(self, message): self.exit(1, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

def _check_args(k, tta, epochs=1):
    "Numbers of the command line that cannot be used, as a `BadInput`"
    for name, v, least in (('--k', k, 1), ('--tta', tta, 0), ('--epochs', epochs, 1)):
        if not isinstance(v, int) or v < least:
            raise BadInput(f"{name} must be a whole number, {least} or more, got {v!r}")

def _check_folds(folds, epochs):
    "--folds: 0 (none), or 2 or more"
    if not isinstance(folds, int) or folds < 0 or folds == 1:
        raise BadInput(f"--folds must be 0 (no out-of-fold pass) or a whole number of folds, 2 or more, got {folds!r}")
    _check_args(1, 0, epochs)

def _quiet(learn):
    "No progress bars where the output is not a terminal: in a log or a pipe they are lines of control characters"
    return contextlib.nullcontext() if sys.stdout.isatty() else learn.no_bar()

def _row(name, stock, ours, w=28): return f"  {name:<{w}}{stock:<30}{ours}"

def _stock_rows(learn):
    "Rows (what, stock fastai, fastinterp) of `get_preds` on the validation set, stock fastai's beside fastinterp's"
    from .preds import stock_get_preds
    from .show import format_probs
    with learn.no_bar():
        sp, st, sd = stock_get_preds(learn, with_decoded=True)
        fp, ft, fd = learn.get_preds(with_decoded=True)
    fmt = lambda t: '[' + ', '.join(f'{float(v):.2f}' for v in t) + ']'
    def acc(d): return f"{(d == st).float().mean():.4f}" if d.ndim == 1 else 'n/a (not class indices)'
    in01 = lambda p: str(bool((p >= 0).all() and (p <= 1).all()))
    return [('probs[0][:4]', fmt(sp[0][:4]), '[' + ', '.join(format_probs(fp[0][:4])) + ']'),  # never 1.00 for 0.998
            ('row sums (first 3)', fmt(sp.sum(1)[:3]), fmt(fp.sum(1)[:3])),
            ('values in [0, 1]', in01(sp), in01(fp)),
            ('decoded[:5]', (fmt(sd[0][:2])[:-1] + ', ...]') if sd.ndim > 1 else str(sd[:5].tolist()),
             str(fd[:5].tolist())),
            ('decoded shape', str(tuple(sd.shape)), str(tuple(fd.shape))),
            ('accuracy of decoded', acc(sd), acc(fd))]

def _tta(learn, dl, n, p):
    "The TTA report of `n` augmented passes over `dl` (None when n is 0)"
    if not n: return None
    p(f"Test-time augmentation: {n} augmented passes and the plain one")
    res = learn.tta(dl=dl, n=n, progress=sys.stdout.isatty()).report
    if res is not None: p(res.to_string(float_format='{:.4f}'.format))
    return res

def _temperature(learn, dl_of, items, labels, p, seed=0):
    "Fit a temperature on half of the labelled items; `calibration()` of the other half before and after (None: cannot)"
    from .interpret import ClassificationInterpretation
    from .report import measure_calibration
    if len(items) < 40: return None  # too few to fit on one half and measure on the other
    idx = np.random.default_rng(seed).permutation(len(items))
    fit, held = np.sort(idx[:len(idx) // 2]), np.sort(idx[len(idx) // 2:])
    dl_fit, dl_held = (dl_of([items[i] for i in h], None if labels is None else [labels[i] for i in h])
                       for h in (fit, held))
    def metrics():  # quiet: the report's own interpretation has already said what these would warn about
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', UserWarning)
            return measure_calibration(ClassificationInterpretation.from_learner(learn, dl=dl_held), ci=0.95)
    # the learner's own: set aside, then restored
    had, own = 'temperature' in vars(learn), vars(learn).get('temperature')
    caught = []
    try:
        with learn.no_bar():
            before = metrics()  # at the learner's own temperature, if any: as the rest of the report
            learn.temperature = None  # T is fitted on the raw outputs: it replaces the learner's, not stacks on it
            with warnings.catch_warnings(record=True) as caught:  # e.g. T stopped at a bound: a line of output
                warnings.simplefilter('always', UserWarning)
                learn.calibrate(dl=dl_fit, quiet=True)
            res = dict(T=float(learn.temperature), before=before, after=metrics(), n_fit=len(fit), n_eval=len(held))
    except (TypeError, ValueError) as e:  # a loss temperature scaling does not apply to
        p(f"Temperature scaling skipped: {e}")
        res = None
    finally:
        if had: learn.temperature = own
        else: vars(learn).pop('temperature', None)
    for w in caught: p(f"Temperature scaling: {w.message}")
    if res is None: return None
    at = ', '.join(f'{t:.3g}' for t in np.atleast_1d(np.asarray(own, dtype=float))) if own is not None else None
    now = 'with no temperature' if at is None else f"at the learner's T = {at}"
    before, after = res['before']['ece'], res['after']['ece']
    same = hasattr(before, 'overlaps') and before.overlaps(after)
    p(f"Temperature scaling: T = {res['T']:.3g} fitted on {res['n_fit']:,} items; ECE on the other {res['n_eval']:,}: "
      f"{100 * before:.2f}% {now}, {100 * after:.2f}% at T = {res['T']:.3g}"
      + ('; their 95% intervals overlap: no clear change' if same else ''))
    return res

def demo(out=DEFAULT_OUT, # Folder to write the report into
        data=None, # Folder for the digits PNGs; a temporary one if None
        epochs:int=4, # Epochs to train
        loss:str='ce', # Key of `LOSSES`
        k:int=9, # Items in each gallery of the report
        tta:int=4, # Augmented passes of test-time augmentation; 0: none
        file=None, # Where to print; stdout if None
        folds:int=0, # Label issues out of fold over every digit, train and valid: this many models; 0: the valid set's
        flip:float=0.0, # Percent of the digits' labels flipped (seeded) before training: errors for the report to find
    ):
    """Train a small CNN on the digits with a plain PyTorch loss; stock fastai's get_preds beside ours; the report

    >>> import io, tempfile
    >>> from contextlib import redirect_stdout
    >>> from pathlib import Path
    >>> tmp = Path(tempfile.mkdtemp())
    >>> with redirect_stdout(io.StringIO()): learn, page = demo(tmp/'report', tmp/'digits', epochs=1, tta=0)
    >>> page.name, len(learn.dls.vocab)
    ('report.html', 10)
    """
    import fastinterp
    import pandas as pd
    from .data import digits_folder, digits_learner
    from .interpret import ClassificationInterpretation
    from .report import write_report
    from fastai.vision.augment import aug_transforms
    if loss not in LOSSES: raise BadInput(f"unknown --loss {loss!r}: the choices are {', '.join(sorted(LOSSES))}")
    _check_args(k, tta, epochs)
    _check_folds(folds, epochs)
    if isinstance(flip, bool) or not isinstance(flip, (int, float)) or not 0 <= flip < 100:
        raise BadInput(f"--flip is a percent of the labels, from 0 to below 100, got {flip!r}")
    default = 'fastinterp-digits' + (f'-flip{flip:g}' if flip else '')  # a folder per share flipped
    data = Path(data or Path(tempfile.gettempdir())/default)
    p = lambda *a: print(*a, file=file or sys.stdout, flush=True)
    try: p(f"Digits (scikit-learn, 1,797 8x8 images) as a PNG folder in {digits_folder(data, flip=flip / 100)}")
    except OSError as e: raise BadInput(f"cannot write the digits into {data} (--data): {e.strerror or e}") from None
    except ValueError as e: raise BadInput(f"--data: {e}") from None
    flipped = None
    if flip:
        flipped = [data/f for f in pd.read_csv(data/'flipped.csv')['file']]
        p(f"{len(flipped)} labels flipped ({flip:g}%): those images sit in another class's folder, listed in "
          f"{data/'flipped.csv'}")
    _out_dir(out)
    learn = digits_learner(data, loss_func=LOSSES[loss](), batch_tfms=aug_transforms(**DEMO_AUG))
    p(f"Training a small CNN for {epochs} epoch(s) with loss_func={learn.loss_func!r}, light augmentation")
    learn.fit_one_cycle(epochs, 1e-2)
    rows = _stock_rows(learn)
    p('\n' + _row('', 'stock fastai 2.8', 'with fastinterp'))
    for r in rows: p(_row(*r))
    p(f"\nactivation used: {fastinterp.activation_for(learn.loss_func).name}\n")
    p("Interpreting the validation set")
    with _quiet(learn): interp = ClassificationInterpretation.from_learner(learn)
    tta_report = _tta(learn, interp.dl, tta, p)
    dl_of = lambda items, _: learn.dls.test_dl(items, with_labels=True)
    temp = _temperature(learn, dl_of, list(interp.dl.items), None, p)
    files = sorted(data.glob('*/*/*.png'))  # every digit, train and valid
    oof = _out_of_fold(_demo_learners(data, loss), files, folds, epochs, 1e-2, p)
    path = write_report(interp, out, k=k, title='fastinterp demo: digits', data=data/'valid', stock=rows,
                        tta=tta_report, temperature=temp, label_issues=oof, flipped=flipped)
    if flipped is not None:
        src = interp if oof is None else oof
        listed = {str(f) for f in src.label_issues_df()['item']}
        covered = {str(f) for f in src._item_names()}
        mine = [f for f in flipped if str(f) in covered]
        p(f"Flipped labels found: {sum(str(f) in listed for f in mine)} of the {len(mine)} flipped among the "
          f"{len(covered):,} items covered ({'out of fold, train and valid' if oof is not None else 'valid set'}); "
          f"{len(listed)} listed as likely label errors")
    p(f"\nReport: {path}")
    return learn, path

def _demo_learners(data, loss):
    "`make_learner(train, valid)` for `out_of_fold` on the digits' files, labelled by their folder, as the demo trains"
    from fastai.vision.all import (CategoryBlock, DataBlock, ImageBlock, IndexSplitter, Learner, aug_transforms,
                                   parent_label)
    from .data import digits_cnn
    def make_learner(train, valid):
        block = DataBlock((ImageBlock, CategoryBlock(vocab=[str(c) for c in range(10)])), get_y=parent_label,
                          splitter=IndexSplitter(range(len(train), len(train) + len(valid))),
                          batch_tfms=aug_transforms(**DEMO_AUG))
        dls = block.dataloaders(list(train) + list(valid), bs=64, num_workers=0)
        return Learner(dls, digits_cnn(), loss_func=LOSSES[loss]())
    return make_learner

# --- `fastinterp report`: reading the data

def _readable(f):
    "Whether the image file `f` exists and decodes"
    from PIL import Image
    try:
        with Image.open(f) as im: im.load()
        return True
    except Exception: return False  # PIL raises many kinds of error for a broken file: any of them means skip it

def read_items(data, # An image folder (labels: parent folder names), or a CSV of items and labels
        item_col=None, # CSV: column of the image paths (default: the first), relative to the CSV's folder
        label_col=None, # CSV: column of the labels (default: the second, if any)
        unlabelled:bool=False, # Ignore the labels
        say=None, # Called with a line saying which columns of a CSV were read
    ):
    """(items, labels or None, skipped): the images of `data` that can be read, their labels, and those that cannot

    >>> import tempfile
    >>> from fastinterp.data import digits_folder
    >>> items, labels, skipped = read_items(digits_folder(tempfile.mkdtemp())/'valid')
    >>> len(items), sorted(set(labels))[:3], skipped
    (359, ['0', '1', '2'], [])
    """
    data = Path(data)
    if not data.exists(): raise BadInput(f"no such file or folder: {data}")
    if data.is_file(): items, labels = _read_csv(data, item_col, label_col, unlabelled, say or (lambda s: None))
    else: items, labels = _read_folder(data, unlabelled)
    ok = [_readable(f) for f in items]
    skipped = [f for f, o in zip(items, ok) if not o]
    if not any(ok):
        why = 'no such file' if not items[0].exists() else 'not an image PIL can open'
        raise BadInput(f"none of the {len(items)} images listed in {data} can be read (e.g. {items[0]}: {why})")
    items = [f for f, o in zip(items, ok) if o]
    if labels is not None: labels = [l for l, o in zip(labels, ok) if o]
    return items, None if unlabelled else labels, skipped

def _read_folder(data, unlabelled):
    from fastai.data.transforms import get_image_files
    files = sorted(get_image_files(data))  # the same report whatever order the file system lists them in
    if not files: raise BadInput(f"no images in {data} (looked for image files in it and its subfolders)")
    loose = [f for f in files if f.parent == data]
    if unlabelled or len(loose) == len(files): return files, None  # no class folders: unlabelled
    if loose:
        raise BadInput(f"{len(loose)} image(s) sit directly in {data}, outside any class folder "
                       f"(e.g. {loose[0].name}): move them into a folder named after their class, or pass --unlabelled")
    return files, [f.parent.name for f in files]

def _names_an_image(data, cell):
    "Whether the CSV cell `cell` is an image path (by its extension, or a file there), not a column name"
    from fastai.data.transforms import image_extensions
    f = Path(cell.strip())
    if not cell.strip(): return False
    try: return f.suffix.lower() in image_extensions or (f if f.is_absolute() else data.parent/f).is_file()
    except OSError: return False  # a name too long to be a file

def _read_csv(data, item_col, label_col, unlabelled, say):
    import pandas as pd
    read = lambda **kw: pd.read_csv(data, dtype=str, keep_default_na=False, **kw)
    try: first = read(header=None, nrows=1)
    except Exception as e:
        raise BadInput(f"cannot read {data} as a CSV ({e}); DATA is an image folder or a CSV of image paths "
                       f"and labels") from None
    # a CSV written without a header: its first row is an item, which read as the header would be lost
    no_header = _names_an_image(data, str(first.iat[0, 0]))
    if no_header and (item_col or label_col):
        raise BadInput(f"{data} has no header row (its first row is an image, {first.iat[0, 0]}), so no column has a "
                       f"name for {'--item-col' if item_col else '--label-col'}: add a header row, or leave out "
                       f"--item-col and --label-col")
    df = read(header=None if no_header else 0)
    if df.empty: raise BadInput(f"{data} has no rows")
    cols = list(df.columns)
    for name, c in (('--item-col', item_col), ('--label-col', label_col)):
        if c is not None and c not in cols:
            raise BadInput(f"{data} has no column {c!r} ({name}); its columns: {', '.join(cols)}")
    item_col = cols[0] if item_col is None else item_col
    label_col = label_col or (cols[1] if len(cols) > 1 and cols[1] != item_col else None)
    col = lambda c: f'column {cols.index(c) + 1}' if no_header else f'column {c!r}'
    labels_from = ('no labels (--unlabelled)' if unlabelled else 'no label column: unlabelled' if label_col is None
                   else f'labels from {col(label_col)}')
    say(f"{data}: " + ('no header row (its first row is an image): ' if no_header else '') +
        f"image paths from {col(item_col)}, {labels_from}" + ('' if no_header else ' (its first row is the header)'))
    items = [f if f.is_absolute() else data.parent/f for f in map(Path, df[item_col])]
    if label_col is None or unlabelled: return items, None
    labels = df[label_col].str.strip().tolist()
    if missing := sum(l == '' for l in labels):
        raise BadInput(f"{missing} row(s) of {data} have no label in {col(label_col)}: label them, "
                       f"or pass --unlabelled")
    return items, labels

def read_rows(learn, # A tabular `Learner` (`tabular_learner`, `TabularDataLoaders`)
        data, # CSV with a header: the learner's feature columns, and its target column for labels
        label_col=None, # Column of the labels (default: the learner's target column, if the CSV has it)
        unlabelled:bool=False, # Ignore the labels
        say=None, # Called with a line saying which columns were read
    ):
    """The rows of the CSV `data` for `learn`: its features, and its labels (as the learner's vocab has them) in the
    learner's target column, dropped where unlabelled

    >>> read_rows(learn, 'no-such.csv')
    Traceback (most recent call last):
    fastinterp.cli.BadInput: no such file: no-such.csv
    """
    import pandas as pd
    data, say = Path(data), say or (lambda s: None)
    if not data.is_file(): raise BadInput(f"no such file: {data}" if not data.exists() else
                                          f"{data} is a folder; a tabular learner reads a CSV of rows")
    try: df = pd.read_csv(data)
    except Exception as e:
        raise BadInput(f"cannot read {data} as a CSV ({e}); give a CSV of rows with a header") from None
    if df.empty: raise BadInput(f"{data} has no rows")
    to = learn.dls.valid_ds
    na = {f'{n}_na' for p in to.procs for n in getattr(p, 'na_dict', {}) if getattr(p, 'add_col', False)}
    feats = [c for c in [*to.cat_names, *to.cont_names] if c not in na]
    if missing := [c for c in feats if c not in df.columns]:
        raise BadInput(f"{data} lacks the learner's feature column(s) {', '.join(map(repr, missing))}; "
                       f"its columns: {', '.join(map(str, df.columns))}")
    y = to.y_names[0]
    if label_col is not None and label_col not in df.columns:
        raise BadInput(f"{data} has no column {label_col!r} (--label-col); its columns: {', '.join(df.columns)}")
    col = label_col or (y if y in df.columns else None)
    rows = df[feats].copy()
    if col is None or unlabelled:
        say(f"{data}: the learner's {len(feats)} feature columns, " +
            ('no labels (--unlabelled)' if unlabelled else f'no label column {y!r}: unlabelled'))
        return rows
    if df[col].isna().any():
        raise BadInput(f"{int(df[col].isna().sum())} row(s) of {data} have no label in column {col!r}: label them, "
                       f"or pass --unlabelled")
    vocab = {str(v): v for v in learn.dls.vocab}
    _check_labels(df[col].astype(str).tolist(), vocab)
    rows[y] = [vocab[str(v)] for v in df[col]]
    say(f"{data}: the learner's {len(feats)} feature columns, labels from column {col!r}")
    return rows

# --- `fastinterp report`: the learner and its DataLoader

def _import(modules):
    "Import `modules`, their names visible in `__main__`, where a learner exported from a notebook or script looks"
    if not modules: return
    main = sys.modules['__main__']
    sys.path.insert(0, '.')  # as `python -c` would: a module beside the user's files imports
    for m in modules:
        try: mod = importlib.import_module(m)
        except Exception as e: raise BadInput(f"cannot import {m} (--import): {type(e).__name__}: {e}") from None
        for k, v in vars(mod).items():
            if not k.startswith('_') and not hasattr(main, k): setattr(main, k, v)

class _Missing(Exception):
    "A class or function a pickle refers to that cannot be found here"

class _Unpickler(pickle.Unpickler):
    "Says which class or function it cannot find, as an error fastai's load_learner does not swallow (ImportError)"
    def find_class(self, module, name):
        try: return super().find_class(module, name)
        except (ImportError, AttributeError) as e: raise _Missing(module, name, e) from None

_pickle = types.ModuleType('pickle')  # what torch.load takes as `pickle_module`: pickle, with our Unpickler
_pickle.__dict__.update({k: v for k, v in vars(pickle).items() if not k.startswith('__')}, Unpickler=_Unpickler)

def _load(fname, # A file written by `learn.export()`
        imports=(), # Modules defining the custom classes or functions the learner was exported with
    ):
    "`load_learner(fname)`, with every way it can fail as one `BadInput` line"
    from fastai.learner import Learner, load_learner
    fname = Path(fname)
    if not fname.exists(): raise BadInput(f"no such file: {fname}")
    if fname.is_dir(): raise BadInput(f"{fname} is a folder; give the file written by learn.export()")
    if not fname.stat().st_size: raise BadInput(f"{fname} is empty (0 bytes); give the file written by learn.export()")
    _import(imports)
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='load_learner` uses Python')  # the user asked to load this file
        try: learn = load_learner(fname, pickle_module=_pickle)
        except Exception as e: raise BadInput(_load_error(fname, e)) from None
    if not isinstance(learn, Learner):
        raise BadInput(f"{fname} holds a {type(learn).__name__}, not a fastai Learner saved with learn.export()")
    return learn

def _load_error(fname, e):
    if isinstance(e, _Missing):
        module, name, err = e.args
        if module.endswith('__main__'):
            return (f"{fname} needs {name}, defined in the script or notebook that exported the learner (__main__) "
                    f"and not here: put it in a module (e.g. mycode.py) and pass --import mycode")
        if isinstance(err, ModuleNotFoundError):
            return (f"{fname} needs module {err.name} (where {name}, which the learner was exported with, is "
                    f"defined), which cannot be imported here: run from its folder with --import {module}, or add "
                    f"its folder to PYTHONPATH")
        return f"{fname} needs {name} from module {module}, which does not define it here ({type(err).__name__}: {err})"
    msg = ' '.join(str(e).split())
    # load_learner moves the `dls` of whatever it unpickled
    if m := re.match(r"'([\w.]+)' object has no attribute 'dls'", msg):
        hint = ' (learn.save and torch.save(model.state_dict()) write weights only)' if 'dict' in m[1].lower() else ''
        return f"{fname} holds a {m[1]}, not a fastai Learner saved with learn.export(){hint}"
    if isinstance(e, (pickle.UnpicklingError, EOFError)):
        return f"{fname} is not a file written by learn.export(): it cannot be unpickled ({type(e).__name__}: {msg})"
    return f"cannot load {fname} as a fastai learner: {type(e).__name__}" + (f": {msg}" if msg else '')

def _classes(learn, fname):
    "The learner's loss record and classes by name, or a clear error for a learner that has none (a regressor)"
    from .activations import activation_for
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)  # an unknown loss: the command says what to do, in its own words
        activation = activation_for(learn.loss_func)
    vocab = getattr(learn.dls, 'vocab', None)
    if activation.kind == 'regression':
        raise BadInput(f"{fname} is a regression learner (loss {activation.loss}): the report is for classifiers")
    if vocab is None: raise BadInput(f"{fname} has no classes (its data has no vocab): the report is for classifiers")
    return activation, {str(v): v for v in vocab}

def _register_hint(learn):
    "What the command's user can do about a loss fastinterp does not know"
    from .activations import _path, _unwrap
    return (f"--import a module of yours that registers its activation, e.g. with "
            f"fastinterp.register_activation({_path(_unwrap(learn.loss_func))}, 'softmax', kind='multiclass')")

def _out_dir(out):
    "Check that the report can be written into `out`, so that a path that cannot be one fails before any work is done"
    from .report import check_out
    out = Path(out).resolve()
    try: check_out(out)
    except ValueError as e: raise BadInput(f"--out {e}") from None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryDirectory(dir=out.parent).cleanup()  # the report is written beside `out`, then renamed to it
    except OSError as e: raise BadInput(f"cannot create the report folder {out} (--out): {e.strerror or e}") from None

def labelled_dl(learn, # A `Learner` built with fastai's data API
        items, # Inputs, as the learner's data takes them (image paths)
        labels=None, # Their labels, as written in the learner's vocab; None: unlabelled
    ):
    """A `DataLoader` of `items` (and `labels`) through the learner's own validation transforms

    >>> import tempfile
    >>> from fastinterp.data import digits_folder, digits_learner
    >>> path = digits_folder(tempfile.mkdtemp())
    >>> files = sorted((path/'valid'/'3').glob('*.png'))[:5]
    >>> x, y = labelled_dl(digits_learner(path), files, ['3'] * 5).one_batch()
    >>> x.shape, y.tolist()
    (torch.Size([5, 3, 8, 8]), [3, 3, 3, 3, 3])
    """
    from fastai.data.core import Datasets
    from fastai.data.transforms import Categorize
    dls = learn.dls
    ds = getattr(dls, 'valid_ds', None)
    if not isinstance(ds, Datasets) or not ds.tls:
        raise BadInput("the learner's data was not built with fastai's data API (DataBlock, ImageDataLoaders), "
                       "so there is no pipeline to read images with")
    try:
        if labels is None: return dls.test_dl(items)
        y = ds.tls[-1].tfms.fs
        if len(ds.tls) != 2 or not y or type(y[-1]) is not Categorize:
            raise BadInput("labelled reports are for single-label classifiers (a Categorize target); pass --unlabelled")
        _check_labels(labels, dls.vocab)
        # fastai's test_set with labels, each pipeline given its own items: paths to the input, labels to the target
        tls = [tl._new(o, split_idx=1) for tl, o in zip(ds.tls, (items, labels))]
        for tl, o in zip(tls, (items, labels)): tl.tfms.fs = tl.tfms.fs[tl.infer_idx(o[0]):]
        return dls.valid.new(Datasets(tls=tls))
    except AssertionError as e:
        raise BadInput(f"the learner's pipeline does not take these items: {str(e).splitlines()[0]}") from None

def _check_labels(labels, vocab):
    "Labels the learner does not know are an error naming them"
    known = {str(v) for v in vocab}
    unknown = sorted(set(map(str, labels)) - known)
    if not unknown: return
    show = lambda xs: ', '.join(repr(x) for x in xs[:10]) + (f' and {len(xs) - 10} more' if len(xs) > 10 else '')
    raise BadInput(f"labels the learner does not know: {show(unknown)} (it knows {show(sorted(known))}); "
                   f"pass --unlabelled for the uncertainty part only")

def _fold_learners(learn, labels_of, bs=64):
    "`make_learner(train, valid)` for `out_of_fold`: the exported learner's pipeline and model, with fresh weights"
    import copy
    from fastai.data.core import DataLoaders, Datasets
    from fastai.learner import Learner
    ds = learn.dls.valid_ds
    def data(items, split_idx):  # fastai's Datasets of the items and their labels, each through its own pipeline
        labels = [labels_of[str(f)] for f in items]
        tls = [tl._new(list(o), split_idx=split_idx) for tl, o in zip(ds.tls, (items, labels))]
        for tl, o in zip(tls, (items, labels)): tl.tfms.fs = tl.tfms.fs[tl.infer_idx(o[0]):]
        return Datasets(tls=tls)
    def make_learner(train, valid):
        model = copy.deepcopy(learn.model)
        for m in model.modules():  # trained on no item yet: the exported weights saw the items being predicted
            if hasattr(m, 'reset_parameters'): m.reset_parameters()
        dls = DataLoaders(learn.dls.train.new(data(train, 0), bs=bs, shuffle=True, drop_last=len(train) > bs),
                          learn.dls.valid.new(data(valid, 1), bs=bs, shuffle=False), device=learn.dls.device)
        return Learner(dls, model, loss_func=learn.loss_func, opt_func=learn.opt_func, splitter=learn.splitter)
    return make_learner

def _out_of_fold(make_learner, items, folds, epochs, lr, p, seed=0):
    "The out-of-fold interpretation of `items`, each fold's learner trained `epochs` at `lr` (None: no folds)"
    from .folds import out_of_fold
    if not folds: return None
    p(f"Out of fold: {folds} models of {epochs} epoch(s) each, every one of the {len(items):,} items predicted by the "
      f"one not trained on it")
    def fit(learn):
        with learn.no_logging(), _quiet(learn): learn.fit_one_cycle(epochs, lr)
    try: interp = out_of_fold(make_learner, items, folds, fit=fit, seed=seed, progress=sys.stdout.isatty())
    except ValueError as e: raise BadInput(f"--folds {folds}: {e}") from None
    est = interp.estimate_label_errors()
    p(f"Likely label errors, out of fold: {est.count:,} estimated ({100 * est.count / len(items):.1f}% of the items); "
      f"out-of-fold accuracy {interp.accuracy():.4f}")
    return interp

def report(learner, # File written by `learn.export()`
        data, # Image folder labelled by parent folder name, or CSV of items and labels
        out=DEFAULT_OUT, # Folder to write the report into
        tta:int=0, # Augmented passes of test-time augmentation; 0: none
        k:int=9, # Items in each gallery
        item_col=None, # CSV column of the image paths (default: the first)
        label_col=None, # CSV column of the labels (default: the second)
        unlabelled:bool=False, # Ignore labels: the uncertainty part only
        imports=(), # Modules defining the learner's custom classes or functions
        file=None, # Where to print; stdout if None
        folds:int=0, # Label issues out of fold: train this many fresh copies of the model, each on the other folds
        epochs:int=4, # With `folds`: epochs to train each fold's model
        lr:float=1e-3, # With `folds`: learning rate of `fit_one_cycle`
    ):
    """Write the report of an exported learner on the images of `data`

    >>> import io, tempfile
    >>> from pathlib import Path
    >>> from fastinterp.data import digits_folder, digits_learner
    >>> tmp = Path(tempfile.mkdtemp())
    >>> digits_learner(digits_folder(tmp/'digits')).export(tmp/'digits.pkl')  # untrained: the report works all the same
    >>> page = report(tmp/'digits.pkl', tmp/'digits'/'valid', tmp/'report', file=io.StringIO())
    >>> page.name, (page.parent/'predictions.csv').read_text().count('\\n') > 359
    ('report.html', True)
    """
    from .interpret import ClassificationInterpretation
    from .report import write_report
    _check_args(k, tta)
    _check_folds(folds, epochs)
    p = lambda *a: print(*a, file=file or sys.stdout, flush=True)
    learn = _load(learner, imports)
    from .segmentation import _mask_codes
    if _mask_codes(learn.dls.valid) is not None:  # a segmentation learner: DATA holds images/ and masks/
        if folds or item_col or label_col:
            raise BadInput(f"{learner} is a segmentation learner: --folds, --item-col and --label-col are for "
                           f"classifiers; DATA is a folder of images/ and masks/")
        return _report_segmentation(learn, learner, data, out, tta, k, unlabelled, p)
    activation, vocab = _classes(learn, learner)
    if hasattr(learn.dls.valid_ds, 'cont_names'):  # a tabular learner: DATA is a CSV of rows
        if tta or folds: raise BadInput(f"--{'tta' if tta else 'folds'} is for images; {learner} is a tabular learner")
        rows = read_rows(learn, data, label_col, unlabelled, say=p)
        y = learn.dls.valid_ds.y_names[0]
        items, labels, skipped = list(range(len(rows))), (rows[y].tolist() if y in rows else None), []
        dl_of = lambda i, l: learn.dls.test_dl(rows.iloc[list(i)], with_labels=l is not None)
        p(f"{len(items):,} rows from {data}" + ('' if labels else '; no labels: the uncertainty part only'))
    else:
        items, labels, skipped = read_items(data, item_col, label_col, unlabelled, say=p)
        unread = f"; {len(skipped):,} could not be read and are skipped (listed in the report)" if skipped else ''
        p(f"{len(items):,} images from {data}" + unread + ('' if labels else '; no labels: the uncertainty part only'))
        if labels is not None: labels = [vocab.get(l, l) for l in labels]
        dl_of = lambda i, l: labelled_dl(learn, i, l)
    dl = dl_of(items, labels)
    _out_dir(out)
    try:
        with _quiet(learn): interp = ClassificationInterpretation.from_learner(learn, dl=dl)
    except (ValueError, TypeError) as e:
        if activation.kind != 'unknown': raise BadInput(f"cannot interpret {learner}: {e}") from None
        raise BadInput(f"{learner} was trained with the loss {activation.loss}, whose final activation fastinterp "
                       f"does not know, and the model's outputs are not probabilities: "
                       f"{_register_hint(learn)}") from None
    if activation.kind == 'unknown':
        p(f"Note: fastinterp does not know the final activation of the loss {activation.loss}, so the model's "
          f"outputs, which lie in [0, 1], are taken as probabilities as they are. If they are not: "
          f"{_register_hint(learn)}")
    if interp.labelled: p(f"accuracy {float(interp.correct().float().mean()):.4f} on {len(items):,} items")
    tta_report = _tta(learn, dl, tta, p)
    temp = None
    if labels is not None and activation.kind == 'unknown':
        p("Temperature scaling skipped: it divides logits, and whether this model outputs logits depends on its loss")
    elif labels is not None: temp = _temperature(learn, dl_of, items, labels, p)
    if folds and labels is None: raise BadInput("--folds finds label errors, and these items have no labels")
    oof = _out_of_fold(_fold_learners(learn, dict(zip(map(str, items), labels or []))), items, folds, epochs, lr, p)
    path = write_report(interp, out, k=k, data=data, skipped=skipped, tta=tta_report, temperature=temp,
                        label_issues=oof)
    p(f"\nReport: {path}")
    return path

def read_masks(data, # A folder holding images/ and masks/ (a mask of the same name per image), or images alone
        unlabelled:bool=False, # Ignore the masks
    ):
    """(images, masks or None): the images of `data/images` and their masks in `data/masks`; images alone: unlabelled

    >>> import tempfile
    >>> from fastinterp.data import digits_masks
    >>> images, masks = read_masks(digits_masks(tempfile.mkdtemp(), size=8))
    >>> len(images), masks[0].parent.name, masks[0].name == images[0].name
    (1797, 'masks', True)
    """
    from fastai.data.transforms import get_image_files
    data = Path(data)
    if not data.is_dir(): raise BadInput(f"{data} is not a folder: a segmentation report reads a folder of images/ "
                                         f"and masks/")
    img_dir = data/'images' if (data/'images').is_dir() else data
    images = sorted(get_image_files(img_dir, recurse=False))
    if not images: raise BadInput(f"no images in {img_dir}")
    if unlabelled or not (data/'masks').is_dir(): return images, None
    masks = [data/'masks'/f.name for f in images]
    if not masks[0].exists():  # a mask may be saved as PNG for a JPEG image
        masks = [data/'masks'/(f.stem + '.png') for f in images]
    missing = [f.name for f, m in zip(images, masks) if not m.exists()]
    if missing: raise BadInput(f"{len(missing):,} image(s) of {img_dir} have no mask of the same name in "
                               f"{data/'masks'}, e.g. {missing[0]}")
    return images, masks

class _Pair:
    "Item `i` of an (image, mask) pair, opened as fastai opens it: a class, not a lambda"
    def __init__(self, i, create): self.i, self.create = i, create
    def __call__(self, o): return self.create(o[self.i])

def _report_segmentation(learn, fname, data, out, tta, k, unlabelled, p):
    "The segmentation page: the masks read as they are, not through the exported learner's own label function"
    from fastai.data.core import Datasets
    from fastai.vision.core import PILImage, PILMask
    from .report import write_report
    from .segmentation import SegmentationInterpretation
    images, masks = read_masks(data, unlabelled)
    p(f"{len(images):,} images from {data}" + ('' if masks else '; no masks: the uncertainty part only'))
    _out_dir(out)
    if masks is None: dl = learn.dls.test_dl(images)
    else:
        # lists, not tuples: a transform maps over the parts of a tuple
        ds = Datasets([[i, m] for i, m in zip(images, masks)],
                      [[_Pair(0, PILImage.create)], [_Pair(1, PILMask.create)]])
        dl = learn.dls.valid.new(ds)
    try:
        with _quiet(learn):
            interp = SegmentationInterpretation.from_learner(learn, dl=dl, tta=tta or False, progress=False)
    except (ValueError, TypeError) as e: raise BadInput(f"cannot interpret {fname}: {e}") from None
    if interp.labelled: p(f"mean IoU {interp.mean_iou():.4f}, pixel accuracy {interp.pixel_accuracy():.4f}")
    path = write_report(interp, out, k=k, data=data, title='fastinterp report: segmentation')
    p(f"\nReport: {path}")
    return path

def main(argv=None):
    """The `fastinterp` command: `fastinterp demo` or `fastinterp report LEARNER.pkl DATA`; bad input: one line, exit 1

    >>> main(['report', 'no-such-learner.pkl', '.'])
    Traceback (most recent call last):
    SystemExit: 1
    """
    parser = _Parser(prog='fastinterp', description=__doc__)
    sub = parser.add_subparsers(dest='cmd', required=True, metavar='{demo,report}')
    d = sub.add_parser('demo', help='train on the digits, compare stock fastai with fastinterp, write a report')
    d.add_argument('--out', default=DEFAULT_OUT, help=f'folder to write the report into (default ./{DEFAULT_OUT}); '
                   'a report already there is replaced whole')
    d.add_argument('--data', help='folder for the digits PNGs (default: a temporary folder)')
    d.add_argument('--epochs', type=int, default=4, help='epochs to train (default 4)')
    d.add_argument('--loss', choices=sorted(LOSSES), default='ce',
                   help='loss to train with (default ce: nn.CrossEntropyLoss())')
    d.add_argument('--k', type=int, default=9, help='items in each gallery (default 9)')
    d.add_argument('--tta', type=int, default=4, metavar='N',
                   help='test-time augmentation with N augmented passes (default 4; 0: none)')
    d.add_argument('--folds', type=int, default=0, metavar='K',
                   help='find label errors out of fold over every digit, train and valid: K models, each trained on '
                        'the other folds (default 0: on the validation set only)')
    d.add_argument('--flip', type=float, default=0, metavar='PCT',
                   help='flip PCT percent of the digits\' labels (seeded) before training, and say how many of them '
                        'the report finds (default 0)')
    r = sub.add_parser('report', help='write the report of an exported learner on a folder or CSV of images',
                       description='LEARNER is unpickled: only load files you trust.')
    r.add_argument('learner', metavar='LEARNER.pkl', help='file written by learn.export()')
    r.add_argument('data', metavar='DATA', help='image folder labelled by the name of each image\'s folder (images '
                   'directly in DATA: unlabelled), or a CSV of image paths (relative to the CSV) and labels, with or '
                   'without a header; a tabular learner: a CSV of rows; a segmentation learner: a folder of images/ '
                   'and masks/ (a mask of the same name per image)')
    r.add_argument('--out', default=DEFAULT_OUT, help=f'folder to write the report into (default ./{DEFAULT_OUT}); '
                   'a report already there is replaced whole')
    r.add_argument('--tta', type=int, default=0, metavar='N',
                   help='test-time augmentation with N augmented passes (default 0: none)')
    r.add_argument('--k', type=int, default=9, help='items in each gallery (default 9)')
    r.add_argument('--item-col', help='CSV column of the image paths (default: the first column)')
    r.add_argument('--label-col', help='CSV column of the labels (default: the second column; none: unlabelled)')
    r.add_argument('--unlabelled', action='store_true', help='ignore the labels: report the uncertainty part only')
    r.add_argument('--folds', type=int, default=0, metavar='K',
                   help='find label errors out of fold over every labelled item of DATA: K fresh copies of the model, '
                        'each trained on the other folds for --epochs (default 0: with the exported model itself)')
    r.add_argument('--epochs', type=int, default=4, help='with --folds: epochs to train each fold\'s model (default 4)')
    r.add_argument('--lr', type=float, default=1e-3, help='with --folds: learning rate of fit_one_cycle (default 1e-3)')
    r.add_argument('--import', dest='imports', action='append', default=[], metavar='MODULE',
                   help='import MODULE first: where the custom loss or functions the learner was exported with live, '
                        'or a module that registers the loss\'s activation (fastinterp.register_activation)')
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the subcommand, which names its own --help
        {'demo': d, 'report': r}[args.cmd].error(f"unrecognized arguments: {' '.join(unknown)}")
    with warnings.catch_warnings():  # as it found them, when the command is run from Python
        warnings.filterwarnings('ignore', category=FutureWarning)
        warnings.showwarning = lambda msg, *a, **kw: print(f"fastinterp {args.cmd}: warning: {msg}", file=sys.stderr)
        try:
            if args.cmd == 'demo': demo(args.out, args.data, args.epochs, args.loss, args.k, args.tta,
                                        folds=args.folds, flip=args.flip)
            else: report(args.learner, args.data, args.out, args.tta, args.k, args.item_col, args.label_col,
                         args.unlabelled, args.imports, folds=args.folds, epochs=args.epochs, lr=args.lr)
        except BadInput as e:
            print(f"fastinterp {args.cmd}: error: {e}", file=sys.stderr)
            sys.exit(1)

if __name__ == '__main__': main()
