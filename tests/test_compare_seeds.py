"Unit tests of the multi-seed aggregate of `dynmoe.compare` on hand-made comparisons (no training, a second or two)."
import math
import pytest
from dynmoe.compare import (t_quantile, mean_ci, verdict, gap_stat, parse_seeds, seed_of, group_by_seed,
                            aggregate_seeds, describe_targets, describe_seed_targets, seeds_table)

def _point(mmacs, acc):
    "A network without exits: one operating point."
    return dict(operating_point=dict(mean_mmacs=mmacs, acc_pct=acc), budget=None,
                anytime=[dict(acc_pct=acc, mean_mmacs=mmacs)])

def _sweep(points):
    "A network with exits: (MMACs, top-1 %, budget error %) per budget; the full path is the last point."
    r = _point(*points[-1][:2])
    r['budget'] = [dict(test_mmacs=m, test_acc_pct=a, budget_error_pct=e) for m, a, e in points]
    return r

def _doc(seed, d=0., epochs=4, extra=False):
    "One seed's comparison: DynMoE's curve shifted by `d` pp; `extra` adds a variant."
    ev = dict(static=_point(40., 70.), moe=_point(30., 68.), branchy=_sweep([(10., 50., 1.), (20., 62., -2.), (40., 70., 0.)]),
              dynmoe=_sweep([(10., 55. + d, 3.), (20., 60. + d, -6.), (30., 69. + d, 0.), (40., 72. + d, 1.)]))
    if extra: ev['moe_e1'] = _point(30., 71.)
    return dict(preset='quick', backbone='resnet20', epochs=epochs, dataset='hand-made', overrides={}, wall_s=1.,
                variants={n: dict(eval=r) for n, r in ev.items()}, meta=dict(seed=seed, command='x', git_commit='0'))

DOCS = [_doc(0, -1., extra=True), _doc(1, 0., extra=True), _doc(2, 1.)]
H3 = 4.302653 / math.sqrt(3)   # half-width of the interval of a 1 pp spread over three seeds

def test_t_and_intervals():
    assert abs(t_quantile(2) - 4.303) < 1e-3
    s = mean_ci([1., 2., 3.])
    assert abs(s['mean'] - 2.) < 1e-12 and abs(s['half'] - H3) < 1e-4
    assert mean_ci([5.])['note'] == 'one seed, no interval'
    assert [verdict(mean_ci(x)) for x in ([1., 2., 3.], [3., 4., 5.], [-5., -4., -3.])] == \
           ['inside the noise', 'met', 'not met']
    assert verdict(mean_ci([1.]), 5., higher=False) == 'met (one seed, no interval)'
    assert gap_stat({0: None, 1: 2.})['seeds'] == [1]

def test_parse_seeds_errors():
    assert parse_seeds('2, 0,1') == [2, 0, 1]
    for bad, msg in [('0,a', 'non-negative integers'), ([1.5], 'non-negative integers'), ('1,1', 'more than once'),
                     ('', 'no seeds')]:
        with pytest.raises(ValueError, match=msg): parse_seeds(bad)

def test_mixed_comparisons_refused():
    with pytest.raises(ValueError, match='epochs'): group_by_seed(DOCS + [_doc(3, epochs=12)])
    with pytest.raises(ValueError, match='backbone'): group_by_seed(DOCS + [_doc(3) | dict(backbone='airres')])
    with pytest.raises(ValueError, match='seed must be an int'): seed_of(_doc(0) | dict(meta=dict(seed=None)))

def test_aggregate():
    agg = aggregate_seeds(DOCS)
    assert agg['seeds'] == [0, 1, 2] and agg['missing'] == {'moe_e1': [2]}
    fin = agg['variants']['dynmoe']['final_exit_acc_pct']
    assert abs(fin['mean'] - 72.) < 1e-9 and abs(fin['half'] - H3) < 1e-4
    t = agg['targets']
    assert (t['vs_moe']['verdict'], t['vs_branchy']['verdict'], t['static_macs_pct']['verdict']) == \
           ('inside the noise', 'inside the noise', 'not met')
    g = agg['final_exit_gaps']
    assert (g['branchy - static']['verdict'], g['dynmoe - moe']['verdict']) == ('met', 'met')
    assert describe_targets(agg) == describe_seed_targets(agg)
    assert seeds_table(agg).count('\n') == 1 + len(agg['variants'])
