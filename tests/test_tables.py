"Tabular rows and texts in the views, to_df and the report: as the user's DataFrame had them"
import numpy as np, pandas as pd, pytest, torch
import torch.nn as nn
import matplotlib.pyplot as plt
from fastai.data.block import CategoryBlock
from fastai.data.transforms import RandomSplitter
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.tabular.all import Categorify, FillMissing, Normalize, TabularDataLoaders, tabular_learner
from fastai.text.all import TextDataLoaders
from fastai.torch_core import set_seed

from fastinterp.interpret import ClassificationInterpretation
from fastinterp.cli import main
from fastinterp.data import wine_texts
from fastinterp.show import untokenize
from conftest import fit_quietly

@pytest.fixture(scope='module')
def wine_rows():
    "Wine with a categorical column and missing values: Categorify, FillMissing and Normalize all have work to do"
    from sklearn.datasets import load_wine
    d = load_wine(as_frame=True)
    df = d.frame.copy()
    df['target'] = df['target'].map({0: 'class_0', 1: 'class_1', 2: 'class_2'})
    df['colour'] = pd.cut(df.pop('color_intensity'), 3, labels=['pale', 'medium', 'deep']).astype(str)
    df.loc[::7, 'magnesium'] = np.nan
    conts = [c for c in d.feature_names if c != 'color_intensity']
    set_seed(0)
    dls = TabularDataLoaders.from_df(df, y_names='target', cat_names=['colour'], cont_names=conts,
                                     procs=[Categorify, FillMissing, Normalize], y_block=CategoryBlock(), bs=32,
                                     valid_idx=list(RandomSplitter(0.3, seed=0)(list(range(len(df))))[1]), num_workers=0)
    learn = fit_quietly(tabular_learner(dls, layers=[32], loss_func=CrossEntropyLossFlat()), 3)
    return learn, df, conts

def same_values(got, raw):
    "Decoded values against the raw DataFrame's, column by column: categories equal, numbers close, NaN where NaN"
    for c in raw.columns:
        if not pd.api.types.is_numeric_dtype(raw[c]): assert got[c].astype(str).tolist() == raw[c].tolist(), c
        else: np.testing.assert_allclose(got[c].astype(float), raw[c].astype(float), rtol=1e-6, err_msg=c)

def test_to_df_has_the_rows_as_the_dataframe_had_them(wine_rows):
    learn, df, conts = wine_rows
    it = ClassificationInterpretation.from_learner(learn)
    got = it.to_df()
    feats = [c for c in df.columns if c != 'target']
    assert got.columns[:3].tolist() == ['item', 'target', 'prediction'] and 'magnesium_na' not in got
    raw = df.loc[got['item']]  # item: the row's label in the DataFrame
    assert got['target'].tolist() == raw['target'].tolist()
    same_values(got[feats].reset_index(drop=True), raw[feats].reset_index(drop=True))
    assert got['magnesium'].isna().sum() == raw['magnesium'].isna().sum() > 0  # missing again, not the median

def cells(fig):
    tab = fig.axes[0].tables[0]
    n_rows = max(r for r, _ in tab.get_celld())
    n_cols = max(c for _, c in tab.get_celld()) + 1
    return [[tab[r, c].get_text().get_text() for c in range(n_cols)] for r in range(n_rows + 1)]

@pytest.mark.parametrize('view', ['plot_top_losses', 'plot_most_uncertain', 'plot_most_incorrect',
                                  'plot_most_correct', 'plot_label_issues'])
def test_table_views_show_decoded_rows(wine_rows, view, tmp_path):
    learn, df, _ = wine_rows
    it = ClassificationInterpretation.from_learner(learn)
    plt.close('all')
    cls = {'plot_most_incorrect': it.vocab[int(it.targs[it.decoded != it.targs][0])],
           'plot_most_correct': 'class_0'}.get(view)
    getattr(it, view)(*([cls] if cls else []), k=4) if view != 'plot_label_issues' else it.plot_label_issues(3)
    fig = plt.gcf()
    fig.savefig(tmp_path/f'{view}.png')
    rows = fig.fastinterp_rows
    t = cells(fig)
    assert t[0][:2] == ['prediction', 'row'] and len(t) == len(rows) + 1
    raw = df.loc[rows['row']]
    assert [r[1] for r in t[1:]] == [str(i) for i in raw.index]
    same_values(rows[['alcohol', 'magnesium', 'colour']], raw[['alcohol', 'magnesium', 'colour']])
    for r, (_, x) in zip(t[1:], raw.iterrows()):  # the figure's cells: the raw values, as typed
        assert r[2] == f"{x['alcohol']:g}"
    assert fig.axes[0].get_title(loc='left').startswith('6 more columns not shown (')  # 14 features, 7 and the row
    plt.close('all')

def bigrams(n_vocab, n_out):
    "Embeddings, a convolution over word pairs ('high proline'), max over the text: trains in seconds"
    class Bigrams(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.conv = nn.Embedding(n_vocab, 16, padding_idx=1), nn.Conv1d(16, 32, 2)
            self.head = nn.Linear(32, n_out)
        def forward(self, x): return self.head(torch.relu(self.conv(self.emb(x).transpose(1, 2))).max(2).values)
    return Bigrams()

@pytest.fixture(scope='module')
def wine_text():
    df = wine_texts()
    set_seed(0)
    dls = TextDataLoaders.from_df(df, text_col='text', label_col='label', valid_pct=0.3, seed=0, bs=32, num_workers=0,
                                  n_workers=0)
    learn = Learner(dls, bigrams(len(dls.vocab[0]), len(dls.vocab[1])), loss_func=nn.CrossEntropyLoss())
    return fit_quietly(learn, 10, 3e-2), df

def test_text_views_show_the_text(wine_text, tmp_path):
    learn, df = wine_text
    it = ClassificationInterpretation.from_learner(learn)
    got = it.to_df()
    assert 0.5 < it.accuracy() < 1  # some right, some wrong: every view has items
    assert got['text'].tolist() == df.loc[got['item'], 'text'].tolist()  # the text as written, no xxbos, no xxmaj
    plt.close('all')
    it.plot_most_uncertain(5)
    fig = plt.gcf()
    fig.savefig(tmp_path/'text.png')
    t = cells(fig)
    assert t[0] == ['prediction', 'row', 'text']
    for r in t[1:]:
        full = df.loc[int(r[1]), 'text']
        assert r[2] == full if len(full) <= 90 else r[2] == f"{full[:89]}… ({len(full)} characters)"
    assert any('characters)' in r[2] for r in t[1:])
    plt.close('all')

def test_untokenize_undoes_the_default_rules():
    from fastai.text.core import Tokenizer, WordTokenizer
    tok = Tokenizer(WordTokenizer())
    for s in ['This wine has HIGH proline, low ash.', "It isn't (quite) the best: 90% of them are!"]:
        assert untokenize(tok(s)) == s

def test_wine_texts_bad_input():
    with pytest.raises(ValueError, match='from 1 to 13'): wine_texts(0)

def run(argv, capsys):
    with pytest.raises(SystemExit) as e: main([str(a) for a in argv])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err

def test_report_of_a_tabular_learner_on_a_csv(wine_rows, tmp_path, capsys):
    learn, df, _ = wine_rows
    learn.export(tmp_path/'wine.pkl')
    valid = df.loc[learn.dls.valid.items.index]
    valid.to_csv(tmp_path/'rows.csv', index=False)
    try: main(['report', str(tmp_path/'wine.pkl'), str(tmp_path/'rows.csv'), '--out', str(tmp_path/'rep'), '--k', '3'])
    except SystemExit as e: assert not e.code
    out = capsys.readouterr().out
    assert f"{len(valid)} rows from {tmp_path/'rows.csv'}" in out
    html = (tmp_path/'rep'/'report.html').read_text()
    pred = pd.read_csv(tmp_path/'rep'/'predictions.csv')
    top = pred.sort_values('loss', ascending=False, kind='stable').iloc[0]
    x = valid.iloc[int(top['item'])]  # the CSV's row
    assert f"<td class=\"text\">{x['colour']}</td>" in html and f">{x['alcohol']:g}</td>" in html
    assert 'xxbos' not in html and 'magnesium_na' not in html
    same_values(pred[['alcohol', 'colour']], valid[['alcohol', 'colour']].reset_index(drop=True))

def test_report_of_a_tabular_learner_bad_input(wine_rows, tmp_path, capsys):
    learn, df, _ = wine_rows
    learn.export(tmp_path/'wine.pkl')
    df.drop(columns='proline').to_csv(tmp_path/'short.csv', index=False)
    code, _, err = run(['report', tmp_path/'wine.pkl', tmp_path/'short.csv', '--out', tmp_path/'rep'], capsys)
    assert code == 1 and "lacks the learner's feature column(s) 'proline'" in err
    df.assign(target='class_9').to_csv(tmp_path/'odd.csv', index=False)
    code, _, err = run(['report', tmp_path/'wine.pkl', tmp_path/'odd.csv', '--out', tmp_path/'rep'], capsys)
    assert code == 1 and "labels the learner does not know: 'class_9'" in err
    code, _, err = run(['report', tmp_path/'wine.pkl', tmp_path/'odd.csv', '--tta', 2, '--out', tmp_path/'rep'], capsys)
    assert code == 1 and '--tta is for images' in err
