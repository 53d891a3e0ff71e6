"Tests for dynmoe.evaluation and dynmoe.difficulty beyond the notebooks' examples: metrics on constructed cases, budgets, exactness against `infer`, bad input, JSON."
import json, math
import numpy as np
import pytest
import torch
import torch.nn as nn
import fastcore.test as ft
from dynmoe.core import set_seed
from dynmoe.models import DynNet
from dynmoe.evaluation import (ExitOutputs, normaliser, path_macs, collect, simulate, check_against_infer, expert_usage, top1_pct,
                               calibration_bins, ece, conformal_scores, conformal_qhat, conformal_eval, anytime, feasible_mmacs,
                               fit_budget, evaluate_model, operating_point)
from dynmoe.difficulty import spearman, association, difficulty_report, summarise_difficulty, final_difficulty, earliness


# ---------- helpers
from dynmoe.models import randomise

def images(n, seed=0):
    "Float images with per-image brightness and contrast, so routing varies."
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g) * 2 * torch.rand(n, 1, 1, 1, generator=g) + torch.randn(n, 3, 1, 1, generator=g)

def midpoints(scores, q, window=8):
    """Per exit, a threshold halfway across the widest gap between neighbouring scores near the q-quantile: no image
    sits within float noise of it (the batch size changes the last bits of a score, and a neighbour 1e-7 away flips)."""
    srt = scores.sort(0).values; n = len(srt)
    lo, hi = max(1, int(q * n) - window), min(n - 1, int(q * n) + window)
    i = (srt[lo:hi + 1] - srt[lo - 1:hi]).argmax(0) + lo   # per exit: the upper score of the widest gap
    cols = torch.arange(srt.shape[1])
    return (srt[i - 1, cols] + srt[i, cols]) / 2

def synthetic_outputs(n, K=4, C=10, seed=0, moe=True):
    "ExitOutputs without a model: deeper exits cost more, per-image costs vary with routing, scores in [0, 1]."
    g = torch.Generator().manual_seed(seed)
    base = torch.tensor([10, 20, 30, 40][:K], dtype=torch.long) * 1_000_000
    extra = (torch.randint(0, 4, (n, K), generator=g) * 500_000).cumsum(1) if moe else torch.zeros(n, K, dtype=torch.long)
    y = torch.randint(0, C, (n,), generator=g)
    return ExitOutputs(torch.randn(n, K, C, generator=g), torch.rand(n, K - 1, generator=g), torch.zeros(n, K, 1, dtype=torch.long),
                       base + extra, torch.zeros(n, K, dtype=torch.long), y, 1, 'budget_gater')

def constant_conf(p, n, n_right, C=10):
    probs = torch.full((n, C), (1 - p) / (C - 1)); probs[:, 0] = p
    return probs.log(), torch.cat([torch.zeros(n_right, dtype=torch.long), torch.ones(n - n_right, dtype=torch.long)])


# ---------- calibration
def test_ece_perfectly_calibrated_is_zero():
    parts = [constant_conf(p, 200, round(200 * p)) for p in (0.35, 0.55, 0.75, 0.95)]
    l, y = torch.cat([a for a, _ in parts]), torch.cat([b for _, b in parts])
    ft.test_close(ece(l, y), 0., eps=1e-6)

def test_ece_known_miscalibration():
    ft.test_close(ece(*constant_conf(0.9, 100, 60)), 0.3, eps=1e-6)                 # overconfident by 30 points
    ft.test_close(ece(*constant_conf(0.55, 100, 95)), 0.4, eps=1e-6)                # underconfident by 40 points
    (l1, y1), (l2, y2) = constant_conf(0.9, 100, 60), constant_conf(0.55, 300, 165)  # a calibrated group dilutes it
    ft.test_close(ece(torch.cat([l1, l2]), torch.cat([y1, y2])), 0.3 * 100 / 400, eps=1e-6)

def test_ece_one_bin_is_gap_of_means_and_logit_shift_invariant():
    g = torch.Generator().manual_seed(0)
    z, y = 2 * torch.randn(500, 5, generator=g), torch.randint(0, 5, (500,), generator=g)
    p = z.softmax(1)
    ft.test_close(ece(z, y, n_bins=1), abs((p.argmax(1) == y).float().mean() - p.max(1).values.mean()).item(), eps=1e-6)
    ft.test_close(ece(z + 7., y), ece(z, y), eps=1e-6)
    cb = calibration_bins(z, y, 15)
    ft.test_eq(int(cb['count'].sum()), 500)
    assert cb['conf'][cb['count'] == 0].isnan().all()

def test_calibration_bin_edges():
    # bins are ((m-1)/M, m/M]: 0.59 and 0.61 straddle 9/15 = 0.6; certainty (1.0) is in the last bin
    for p, b in ((0.59, 8), (0.61, 9), (1.0, 14)):
        l, y = constant_conf(p, 10, 6) if p < 1 else (torch.tensor([[30., 0.]]).expand(10, 2), torch.zeros(10, dtype=torch.long))
        ft.test_eq(int(calibration_bins(l, y)['count'][b]), 10)


# ---------- conformal
def logits_and_labels(n, seed, C=10, scale=3., temp=1.):
    g = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(n, C, generator=g)
    return z * temp, torch.multinomial(z.softmax(1), 1, generator=g).squeeze(1)

@pytest.mark.parametrize('score', ['lac', 'aps'])
@pytest.mark.parametrize('alpha', [0.1, 0.05])
@pytest.mark.parametrize('temp', [1., 3.])   # 3: an overconfident model; coverage needs no calibration
def test_conformal_coverage(score, alpha, temp):
    covs = []
    for seed in range(10):
        zc, yc = logits_and_labels(1000, 2 * seed, temp=temp); zt, yt = logits_and_labels(2000, 2 * seed + 1, temp=temp)
        r = conformal_eval(zc, yc, zt, yt, alpha, score)
        assert r['coverage_pct'] >= 100 * (1 - alpha) - 2.5, r
        covs.append(r['coverage_pct'])
    assert np.mean(covs) >= 100 * (1 - alpha) - 0.5, covs
    assert np.mean(covs) <= 100 * (1 - alpha) + 2.0, covs   # and not trivially (all classes every time)

def test_conformal_qhat_is_the_right_order_statistic():
    # LAC scores 1 - p_y of 9 calibration images: 0.1 .. 0.9; ceil(10 * 0.8) = 8th smallest = 0.8
    p = torch.linspace(0.9, 0.1, 9)
    z = torch.stack([p, 1 - p], 1).log()
    ft.test_close(conformal_qhat(z, torch.zeros(9, dtype=torch.long), 0.2, 'lac'), 0.8, eps=1e-6)
    ft.test_eq(conformal_qhat(z, torch.zeros(9, dtype=torch.long), 0.05, 'lac'), float('inf'))

def test_aps_scores():
    p = torch.tensor([[0.5, 0.2, 0.3]])
    ft.test_close(conformal_scores(p.log(), 'aps'), torch.tensor([[0.5, 1.0, 0.8]]), eps=1e-6)
    ft.test_close(conformal_scores(p.log(), 'lac'), torch.tensor([[0.5, 0.8, 0.7]]), eps=1e-6)


# ---------- expert usage, anytime
def test_expert_usage_counts_only_images_reaching_the_stage():
    ex = torch.tensor([[[0], [1], [-1]], [[0], [2], [2]], [[1], [-1], [-1]]])   # (3 images, 3 stages, k=1)
    fr, n = expert_usage(ex, 3)
    ft.test_eq(n.tolist(), [3, 2, 1])
    ft.test_close(fr, torch.tensor([[2 / 3, 1 / 3, 0], [0, .5, .5], [0, 0, 1]], dtype=torch.float64))

def test_anytime_matches_per_exit_accuracy():
    o = synthetic_outputs(300)
    a = anytime(o)
    ft.test_eq(len(a), 4)
    for k, r in enumerate(a):
        ft.test_close(r['acc_pct'], top1_pct(o.logits[:, k], o.y)); ft.test_close(r['mean_mmacs'], o.path_macs[:, k].double().mean().item() / 1e6)


# ---------- budgets
@pytest.mark.parametrize('K', [2, 3, 4])
def test_budget_fitting_hits_targets(K):
    ov, ot = synthetic_outputs(4000, K, seed=1), synthetic_outputs(4000, K, seed=2)
    lo, hi = feasible_mmacs(ov)
    for b in np.linspace(lo, hi, 9):
        f = fit_budget(ov, float(b))
        assert abs(f['fitted_mmacs'] - b) <= 0.005 * b, (b, f)                    # validation: within 0.5 %
        test = simulate(ot, f['thresholds']).macs.double().mean().item() / 1e6
        assert abs(test - b) <= 0.03 * b, (b, test)                              # a fresh split of the same distribution: within 3 %
        ft.test_eq(f['thresholds'].shape, (K - 1,))

def test_budget_ends_and_monotone_accuracy_free():
    ov = synthetic_outputs(1000, 3, seed=3)
    lo, hi = feasible_mmacs(ov)
    ft.test_eq(fit_budget(ov, hi)['thresholds'], torch.full((2,), float('inf')))   # the full path: nobody leaves early
    f = fit_budget(ov, lo)
    ft.test_eq(simulate(ov, f['thresholds']).exit, torch.zeros(1000, dtype=torch.long))   # the cheapest: everyone at exit 1

def test_bad_budgets():
    ov = synthetic_outputs(500, 3, seed=4)
    lo, hi = feasible_mmacs(ov)
    ft.test_fail(lambda: fit_budget(ov, lo - 1), contains=f'outside the feasible range [{lo:.3f}, {hi:.3f}] MMACs')
    ft.test_fail(lambda: fit_budget(ov, hi + 1), contains=f'outside the feasible range [{lo:.3f}, {hi:.3f}] MMACs')
    ft.test_fail(lambda: fit_budget(ov, 0.), contains='every image leaves at exit 1')
    ft.test_fail(lambda: fit_budget(ov, float('inf')), contains='finite number of MMACs')
    ft.test_fail(lambda: fit_budget(ov, '20'), contains='finite number of MMACs')
    one = ExitOutputs(ov.logits[:, -1:], None, ov.experts[:, :1], ov.path_macs[:, -1:], ov.overhead_macs[:, -1:], ov.y)
    ft.test_fail(lambda: fit_budget(one, 30.), contains='a budget needs early exits')


# ---------- exactness against the real dynamic inference
CASES = [('dynmoe', dict(k=2, expert_width=[0.25, 0.5, 0.5, 1.0])), ('dynmoe', dict(policy='confidence')), ('dynmoe', dict(policy='jei')),
         ('branchy', {}), ('moe', {}), ('static', {})]

@pytest.mark.parametrize('kind,kw', CASES, ids=[f'{k}-{i}' for i, (k, _) in enumerate(CASES)])
def test_simulate_equals_infer(kind, kw):
    m = randomise(DynNet(kind, 'resnet20', **kw), seed=1)
    x = images(64, seed=1)
    o = collect(m, x, batch_size=24, amp=False, progress=False)          # batches that do not divide N
    settings = [None] if o.K == 1 else [None, midpoints(o.scores, 0.3), midpoints(o.scores, 0.7), [0., 0.], [float('inf')] * 2]
    for thr in settings:
        s, r = simulate(o, thr), m.infer(x, thr)
        ft.test_eq(s.exit, r.exit); ft.test_eq(s.experts, r.experts); ft.test_eq(s.macs, r.macs)
        ft.test_close(s.logits, r.logits, eps=1e-4)
    if o.K > 1: assert len(simulate(o, midpoints(o.scores, 0.5)).exit.unique()) > 1
    if kind == 'static': ft.test_eq(o.path_macs[:, 0], torch.full((64,), m.full_macs()))

def test_budget_thresholds_equal_infer():
    m = randomise(DynNet('dynmoe', 'resnet20', expert_width=[0.25, 0.5, 0.75, 1.0]), seed=2)
    xv, xt = images(64, seed=2), images(48, seed=3)
    ov, ot = collect(m, xv, amp=False, progress=False), collect(m, xt, amp=False, progress=False)
    lo, hi = feasible_mmacs(ov)
    for b in np.linspace(lo, hi, 5):
        thr = fit_budget(ov, float(b))['thresholds']
        r = m.infer(xt, thr)
        ft.test_eq(simulate(ot, thr).macs, r.macs)            # the realised per-image MACs are infer's
        c = check_against_infer(m, xt, ot, thr)
        ft.test_eq([c[k] for k in ('same_exit_pct', 'same_macs_pct', 'same_experts_pct', 'same_prediction_pct')], [100.] * 4)

def test_collect_uint8_with_normalise_equals_floats():
    m = randomise(DynNet('dynmoe', 'resnet20'), seed=3)
    g = torch.Generator().manual_seed(0)
    u = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8, generator=g)
    norm = normaliser((0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    a, b = collect(m, u, normalise=norm, batch_size=7, amp=False, progress=False), collect(m, norm(u), amp=False, progress=False)
    ft.test_close(a.logits, b.logits, eps=1e-5); ft.test_eq(a.experts, b.experts); ft.test_eq(a.path_macs, b.path_macs)
    ft.test_fail(lambda: collect(m, u), contains='pass normalise=')
    ft.test_fail(lambda: norm(u.float()), contains='uint8 images')
    ft.test_fail(lambda: collect(m, norm(u), batch_size=0), contains='batch_size must be >= 1')

def test_path_macs_shape_check():
    m = DynNet('dynmoe', 'resnet20')
    ft.test_fail(lambda: path_macs(m, torch.zeros(4, 2, 1, dtype=torch.long)), contains='experts must be (N, S=3, k)')


# ---------- the entry point
def _check_json(d):
    s = json.dumps(d, allow_nan=False)                          # strict JSON: no NaN / inf, no tensors
    return json.loads(s)

def test_evaluate_model_json_and_contents():
    m = randomise(DynNet('dynmoe', 'resnet20'), seed=4)
    xv, xt = images(64, seed=4), images(64, seed=5)
    g = torch.Generator().manual_seed(1)
    yv, yt = torch.randint(0, 10, (64,), generator=g), torch.randint(0, 10, (64,), generator=g)
    thr = midpoints(collect(m, xv, amp=False, progress=False).scores, 0.5)
    r = _check_json(evaluate_model(m, (xv, yv), (xt, yt), thresholds=thr, batch_size=32, amp=False, verify=64, progress=False))
    op = r['operating_point']
    ft.test_eq(sum(op['exit_count']), 64); ft.test_close(sum(op['exit_pct']), 100.)
    ft.test_eq(len(op['expert_usage_frac']), 3); ft.test_eq(len(op['reliability']['bin_count']), 15)
    ft.test_eq(sorted((c['score'], c['target_coverage_pct']) for c in op['conformal']), [('aps', 90.), ('aps', 95.), ('lac', 90.), ('lac', 95.)])
    ft.test_eq(len(r['budget']), 7)
    for b in r['budget']:
        ft.test_close(b['budget_error_pct'], 100 * (b['test_mmacs'] - b['target_mmacs']) / b['target_mmacs'])
    for k in ('same_exit_pct', 'same_macs_pct', 'same_experts_pct'): ft.test_eq(r['infer_check'][k], 100.)
    ft.test_eq(r['model']['kind'], 'dynmoe'); ft.test_close(r['model']['full_path_mmacs'], m.full_macs() / 1e6)
    assert 0 < op['gate_policy_share_pct'] < 1
    assert r['latency'] is None

def test_evaluate_model_bad_input_and_skip():
    m = randomise(DynNet('branchy', 'resnet20'), seed=5)
    x, y = images(32, seed=6), torch.randint(0, 10, (32,))
    kw = dict(amp=False, verify=0, progress=False)
    lo = feasible_mmacs(collect(m, x, amp=False, progress=False))[0]
    ft.test_fail(lambda: evaluate_model(m, (x, y), (x, y), budgets=[lo / 2], **kw), contains='feasible range')
    r = evaluate_model(m, (x, y), (x, y), budgets=[lo / 2], on_infeasible='skip', **kw)
    ft.test_eq(r['budget'], []); ft.test_eq(r['budget_skipped_mmacs'], [lo / 2])
    ft.test_fail(lambda: evaluate_model(m, (x, y), (x, y), on_infeasible='clip', **kw), contains="on_infeasible must be 'raise' or 'skip'")
    ft.test_fail(lambda: evaluate_model(m, (x, None), (x, y), **kw), contains='needs labels')
    ft.test_fail(lambda: evaluate_model(m, (x, y[:5]), (x, y), **kw), contains='labels must be an int64 tensor of shape (32,)')

def test_evaluate_model_with_latency_is_json():
    m = randomise(DynNet('static', 'resnet20'), seed=6)
    x, y = images(16, seed=7), torch.randint(0, 10, (16,))
    r = _check_json(evaluate_model(m, (x, y), (x, y), amp=False, verify=8, latency=True, progress=False))
    ft.test_eq(r['budget'], None)
    assert {'batch1', 'batch256'} <= set(r['latency']) and r['latency']['batch256']['median_ms'] > 0   # measured, not judged


# ---------- difficulty
def test_spearman_and_association():
    x = np.arange(30.)
    ft.test_close(spearman(x, np.exp(x))['rho'], 1.)
    ft.test_eq(spearman(x, np.zeros(30))['p_value'], None)
    a = np.repeat(np.arange(3), 100); b = (a + 1) % 3
    ft.test_close(association(a, b)['cramers_v'], 1.)
    assert association(a, b)['p_value'] < 1e-10
    ft.test_eq(association(a, np.ones(300))['cramers_v'], None)

def test_final_difficulty_and_earliness():
    o = synthetic_outputs(50, 3)
    loss, margin = final_difficulty(o)
    ft.test_close(loss, nn.functional.cross_entropy(o.logits[:, -1], o.y, reduction='none'))
    assert ((margin >= 0) & (margin <= 1)).all()
    ex = simulate(o, [0.5, 0.5]).exit
    e = earliness(o, ex)
    assert (e[ex == 0].max() < e[ex == 1].min()) and (e[ex == 1].max() < e[ex == 2].min())   # exit first, then decisiveness

def test_difficulty_report_json():
    m = randomise(DynNet('dynmoe', 'resnet20', expert_width=[0.25, 0.5, 0.75, 1.0]), seed=7)
    g = torch.Generator().manual_seed(2)
    u = (torch.rand(40, 3, 32, 32, generator=g) * 255).to(torch.uint8); y = torch.arange(40) % 10
    norm = normaliser((0.5,) * 3, (0.25,) * 3)
    r = _check_json(difficulty_report(m, (u, y), norm, severities=(1, 4), kinds=('noise', 'gaussian_blur'), n=30, amp=False, progress=False))
    ft.test_eq(r['severities'], [0, 1, 4])
    ft.test_eq([(c['kind'], c['severity']) for c in r['conditions']], [('clean', 0), ('noise', 1), ('noise', 4), ('gaussian_blur', 1), ('gaussian_blur', 4)])
    ft.test_eq(len(r['image_idx']), 30)
    ft.test_eq(len(summarise_difficulty(r)), len(r['correlations']) + len(r['associations']))
    ft.test_close(r['expert_mmacs'][0][-1], 4 * r['expert_mmacs'][0][0], eps=1e-3)   # widths 1/4 .. 1: four times the MACs
    ft.test_fail(lambda: difficulty_report(m, (u.float(), y), norm, n=10), contains='uint8')
