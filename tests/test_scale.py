"""Memory at scale, measured as the rise of a fresh process's peak RSS (VmHWM, reset through /proc/self/clear_refs),
which counts torch's C allocations (tracemalloc does not see them): stable on a shared machine, unlike wall time"""
import json, os, subprocess, sys, textwrap
from pathlib import Path
import pytest

pytestmark = pytest.mark.skipif(not Path('/proc/self/clear_refs').exists(), reason='needs Linux /proc')

SETUP = '''
import json, torch, torch.nn as nn
torch.set_num_threads(1)
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner
from fastinterp import ClassificationInterpretation, StreamingStats
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key): return int(line.split()[1]) * 1024
def peak_rise(f):
    "Peak RSS rise over the RSS before `f`, in bytes, and f's result"
    base = status('VmRSS'); open('/proc/self/clear_refs', 'w').write('5')
    res = f()
    return status('VmHWM') - base, res
def learner(n, c, d=4):
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(n, d, generator=g), torch.randn(d, c, generator=g)
    y = (x @ w + 3 * torch.randn(n, c, generator=g)).argmax(1)
    class Items(torch.utils.data.Dataset):
        def __len__(self): return n
        def __getitem__(self, i): return x[i], y[i]
    model = nn.Linear(d, c)
    with torch.no_grad(): model.weight.copy_(w.T)
    ds = Items()
    return Learner(DataLoaders(DataLoader(ds, bs=2048), DataLoader(ds, bs=2048)), model, loss_func=nn.CrossEntropyLoss())
'''

# glibc's malloc keeps freed blocks below its sliding mmap threshold (up to 32 MB) in the heap, so RSS holds memory
# an earlier pass freed: a later allocation reuses it (a build measured at -8 kB) or lands beside it (views 50 MB one
# run, 106 MB the next). A fixed threshold gives every block of 128 kB or more its own mapping, returned when freed,
# so the rise of RSS is the memory the code holds.
ENV = {**os.environ, 'MALLOC_MMAP_THRESHOLD_': str(128 * 1024)}

def run(code):
    r = subprocess.run([sys.executable, '-c', SETUP + textwrap.dedent(code)], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])

def test_in_memory_build_and_every_view_stay_near_the_probabilities():
    N, C = 200_000, 100
    res = run(f'''
        learn = learner({N}, {C})
        learn.get_preds()  # fastai's and torch's one-off allocations of a first pass, out of the figure
        build, it = peak_rise(lambda: ClassificationInterpretation.from_learner(learn, progress=False))
        def views():
            it.top_losses(9); it.most_uncertain(9); it.most_uncertain(9, 'uniform_distance'); it.confusion_matrix()
            it.most_confused(); it.per_class(); it.most_correct(3, 9); it.most_incorrect(3, 9); it.calibration()
            it.to_df()
        views_peak, _ = peak_rise(views)
        print(json.dumps({{'build': build, 'views': views_peak}}))
    ''')
    probs = N * C * 4
    # the build holds the probabilities once (no list of batches, no raw outputs beside them) plus per-item columns;
    # each view works block by block (blocks of rows of 1 MB, a few at a time, whatever N) and keeps O(N) per-item
    # columns at most: 21 MB measured here, the DataFrame of to_df the largest
    assert res['build'] < 1.25 * probs, res
    assert res['views'] < 0.3 * probs + 8 * 2**20, res

@pytest.mark.parametrize('how', ['fastai', 'own'])
def test_streaming_memory_is_flat_in_the_number_of_items(how):
    "Twenty times the items, the same memory, each size in a fresh process (the first pass of a process costs more)"
    code = '''
        import fastinterp.stats
        # blocks of held-back batches far smaller than either N: a block is a fixed cost, and one of 2**21 values
        # would be half filled at 20,000 x 50 and full at 200,000, a difference that says nothing of growth in N
        fastinterp.stats._HOLD = 4 * 2048 * 50
        learn = learner({n}, 50)
        learn.get_preds()  # one-off allocations of a first pass, out of the figures
        def fastai():
            return ClassificationInterpretation.from_learner(learn, streaming=True, k=50, progress=False)
        def own():
            stats, start = StreamingStats(50, k=50), 0
            with torch.no_grad():
                # a torch DataLoader: its sequential sampler holds no list of the items, as fastai's does
                for xb, yb in torch.utils.data.DataLoader(learn.dls.valid.dataset, batch_size=2048):
                    out = learn.model(xb)
                    stats.update(out.softmax(1), yb, nn.functional.cross_entropy(out, yb, reduction='none'),
                                 torch.arange(start, start + len(yb)))
                    start += len(yb)
            return stats.compute()
        print(json.dumps(peak_rise({how})[0]))
    '''
    small, big = (run(code.format(n=n, how=how)) for n in (20_000, 400_000))
    # nothing kept grows with N (the index of the loader is a range): an int64 per item would add 3 MB, fastai's list
    # of the indices 14 MB; the rest is the allocator's run-to-run spread of a MB or two
    assert big < 1.1 * small + 3 * 2**20, (small, big)

def test_blocks_of_rows_return_their_memory_under_the_default_allocator():
    "Block results written into one tensor: small pieces kept between the blocks' temporaries made glibc grow its heap"
    N, C = 200_000, 100
    code = SETUP + textwrap.dedent(f'''
        from fastinterp.core import TINY, brier_terms, by_rows
        from fastinterp.uncertainty import uncertainty, MEASURES
        p = torch.randn({N}, {C}, generator=torch.Generator().manual_seed(0)).softmax(1)
        t = torch.randint(0, {C}, ({N},))
        # first in the process, a function of three temporaries per block: where joining a list of the blocks'
        # results rose 1.7x the probabilities (133 MB)
        out = {{'three temporaries': peak_rise(lambda: by_rows(lambda b: -(b * b.clamp_min(TINY).log()).sum(1), p))[0]}}
        out.update({{m: peak_rise(lambda: uncertainty(p, m))[0] for m in MEASURES}})
        out['brier_terms'] = peak_rise(lambda: brier_terms(p, t))[0]
        print(json.dumps(out))
    ''')
    # glibc's own allocator, as a user has it: ENV's fixed threshold would hide the heap's growth
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if not k.startswith('MALLOC_')})
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    probs = N * C * 4
    # a result is N floats (0.8 MB; Brier's 1.6 MB), a block's temporaries a few MB, and the first call in a process
    # pays for the allocator's first arenas (about 13 MB here)
    assert res.pop('three temporaries') < 0.5 * probs, res
    for name, rise in res.items(): assert rise < 0.15 * probs, (name, rise, res)
