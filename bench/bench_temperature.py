"""Temperature fitting: fastinterp's `fit_temperature` against LBFGS with a strong-Wolfe line search (the same
optimum), the recipe of Guo et al. 2017 (LBFGS, lr=0.01, max_iter=50) and netcal's TemperatureScaling (if installed).

Synthetic held-out logits of an over-confident model whose true temperature is 3: labels are drawn from
softmax(logits / 3). T is fitted on one half; NLL and ECE (15 bins) are measured on the other half.
Time: median of --runs fits, alternating after one warm-up fit each, on the same float32 logits, 2 torch threads (the
Guo recipe and netcal, far slower and not the reference of the ratio: one fit each).
Run: .venv/bin/python bench/bench_temperature.py [--runs 5] [--cases 10000x100,100000x1000]
"""
import argparse, gc, statistics, time, warnings
warnings.filterwarnings('ignore')

import torch, torch.nn.functional as F
from fastinterp.calibration import ece, fit_temperature

def logits(n, c, T=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g) * 4
    y = torch.multinomial(torch.softmax(z / T, 1), 1, generator=g)[:, 0]
    return z, y

def lbfgs(z, y, strong_wolfe=True):
    "T by torch's LBFGS on the mean NLL: strong-Wolfe to convergence, or Guo et al.'s lr=0.01, max_iter=50"
    t = torch.full((1,), 1.0 if strong_wolfe else 1.5, requires_grad=True)
    opt = (torch.optim.LBFGS([t], lr=1, max_iter=100, line_search_fn='strong_wolfe', tolerance_grad=1e-9,
                             tolerance_change=1e-12) if strong_wolfe else torch.optim.LBFGS([t], lr=0.01, max_iter=50))
    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / t, y)
        loss.backward()
        return loss
    opt.step(closure)
    return float(t)

def netcal_T(z, y):
    from netcal.scaling import TemperatureScaling
    ts = TemperatureScaling()
    # in float64: on float32 probabilities netcal's finite-difference gradient is 0 and it returns T = 1 untouched
    ts.fit(torch.softmax(z.double(), 1).numpy(), y.numpy(), tensorboard=False)
    return 1 / float(ts.temperature[0])  # netcal's `temperature` multiplies the logits: the reciprocal of T

METHODS = {'fastinterp fit_temperature': lambda z, y: fit_temperature(z, y),
           'LBFGS strong-Wolfe': lambda z, y: lbfgs(z, y),
           'Guo et al. (LBFGS lr=0.01, 50 iter)': lambda z, y: lbfgs(z, y, False),
           'netcal TemperatureScaling': netcal_T}

def main():
    p = argparse.ArgumentParser()
    p.add_argument('--runs', type=int, default=5); p.add_argument('--cases', default='10000x100,100000x1000')
    a = p.parse_args()
    torch.set_num_threads(2)
    try: import netcal  # noqa: F401
    except ImportError: METHODS.pop('netcal TemperatureScaling'); print("netcal is not installed: left out\n")
    for case in a.cases.split(','):
        n, c = map(int, case.split('x'))
        z, y = logits(2 * n, c)
        fit, held = (z[:n], y[:n]), (z[n:], y[n:])
        print(f"{n:,} x {c:,} held-out logits, true T = 3; median of {a.runs} fits")
        print(f"{'method':<38}{'time':>11}{'T':>9}{'held-out NLL':>14}{'ECE':>9}")
        times, Ts = {}, {}
        # the two compared: one warm-up fit each (first calls pay for torch's lazy set-up and the allocator's growth),
        # then alternating fits, the garbage collected before each; the slower two: one fit each
        timed = {name: [] for name in ('fastinterp fit_temperature', 'LBFGS strong-Wolfe')}
        for name in timed: METHODS[name](*fit)
        for _ in range(a.runs):
            for name, ts in timed.items():
                gc.collect(); t0 = time.perf_counter(); Ts[name] = METHODS[name](*fit)
                ts.append(time.perf_counter() - t0)
        for name, f in METHODS.items():
            if name in timed: times[name], T = statistics.median(timed[name]), Ts[name]
            else:
                gc.collect(); t0 = time.perf_counter(); T = f(*fit); times[name] = time.perf_counter() - t0
            nll = float(F.cross_entropy(held[0] / T, held[1]))
            e = ece(torch.softmax(held[0] / T, 1), held[1])
            print(f"{name:<38}{times[name] * 1e3:>9,.1f}ms{T:>9.4f}{nll:>14.5f}{e:>9.4f}")
        ref = times['LBFGS strong-Wolfe']
        print(f"fastinterp / strong-Wolfe LBFGS time: {times['fastinterp fit_temperature'] / ref:.2f}\n")

if __name__ == '__main__': main()
