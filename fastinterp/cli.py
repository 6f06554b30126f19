"The `fastinterp` command: `fastinterp demo` shows what stock fastai and fastinterp return for one model"

__all__ = ['main', 'demo']

import argparse, sys, tempfile, time, warnings
from pathlib import Path

LOSSES = {  # --loss choices: how users commonly write a classification loss
    'ce':       lambda: __import__('torch').nn.CrossEntropyLoss(),
    'ce-fn':    lambda: __import__('torch').nn.functional.cross_entropy,
    'ce-flat':  lambda: __import__('fastai.losses', fromlist=['x']).CrossEntropyLossFlat(),
    'focal':    lambda: __import__('fastai.losses', fromlist=['x']).FocalLoss(),
}

def _row(name, stock, ours, w=28): return f"  {name:<{w}}{stock:<30}{ours}"

def demo(data=None, # Folder for the digits PNGs; a temporary one if None
        epochs:int=2, # Epochs to train
        loss:str='ce', # Key of `LOSSES`
        out=sys.stdout,
    ):
    "Train a small CNN on the digits with a plain PyTorch loss; print stock fastai's get_preds beside fastinterp's"
    import torch
    import fastinterp
    from fastinterp.data import digits_folder, digits_learner
    from fastinterp.preds import stock_get_preds
    data = Path(data or Path(tempfile.gettempdir())/'fastinterp-digits')
    p = lambda *a: print(*a, file=out)
    p(f"Digits (scikit-learn, 1,797 8x8 images) as a PNG folder in {digits_folder(data)}")
    learn = digits_learner(data, loss_func=LOSSES[loss]())
    p(f"Training a small CNN for {epochs} epoch(s) with loss_func={learn.loss_func!r} ...")
    t0 = time.time()
    learn.fit_one_cycle(epochs, 1e-2)
    p(f"trained in {time.time()-t0:.1f}s\n")
    with learn.no_bar():
        sp, st, sd = stock_get_preds(learn, with_decoded=True)
        fp, ft, fd = learn.get_preds(with_decoded=True)
    fmt = lambda t: '[' + ', '.join(f'{float(v):.2f}' for v in t) + ']'
    def acc(d): return f"{(d == st).float().mean():.4f}" if d.ndim == 1 else 'n/a (not class indices)'
    p(_row('', 'stock fastai 2.8', 'with fastinterp'))
    p(_row('probs[0][:4]', fmt(sp[0][:4]), fmt(fp[0][:4])))
    p(_row('row sums (first 3)', fmt(sp.sum(1)[:3]), fmt(fp.sum(1)[:3])))
    p(_row('values in [0, 1]', str(bool((sp >= 0).all() and (sp <= 1).all())), str(bool((fp >= 0).all() and (fp <= 1).all()))))
    p(_row('decoded[:5]', (fmt(sd[0][:2])[:-1] + ', ...]') if sd.ndim > 1 else str(sd[:5].tolist()), str(fd[:5].tolist())))
    p(_row('decoded shape', str(tuple(sd.shape)), str(tuple(fd.shape))))
    p(_row('accuracy of decoded', acc(sd), acc(fd)))
    p(f"\ntargets[:5] = {st[:5].tolist()}; activation used: {fastinterp.activation_for(learn.loss_func).name}")
    return learn

def main(argv=None):
    parser = argparse.ArgumentParser(prog='fastinterp', description=__doc__)
    sub = parser.add_subparsers(dest='cmd', required=True)
    d = sub.add_parser('demo', help='train on the digits and compare stock fastai with fastinterp')
    d.add_argument('--data', help='folder for the digits PNGs (default: a temporary folder)')
    d.add_argument('--epochs', type=int, default=2, help='epochs to train (default 2)')
    d.add_argument('--loss', choices=sorted(LOSSES), default='ce', help='loss to train with (default ce: nn.CrossEntropyLoss())')
    args = parser.parse_args(argv)
    warnings.filterwarnings('ignore', category=FutureWarning)
    if args.cmd == 'demo': demo(args.data, args.epochs, args.loss)

if __name__ == '__main__': main()
