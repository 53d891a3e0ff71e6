"Tests of dynmoe.export and dynmoe.latency: ONNX export, the onnxruntime runtime against DynNet.infer, the latency table and its use. No timing is asserted."
import sys
import numpy as np
import pytest
import torch
import torch.nn as nn
from dynmoe.models import DynNet
from dynmoe.losses import exit_costs
from dynmoe.data import sample_images
from dynmoe.models import randomise as _randomise
from dynmoe.export import (export_onnx, OrtNet, segments, path_cost, graph_cost, fused_path, check_against_torch, load_weights,
                           is_trained, require_onnxruntime)
from dynmoe.latency import (measure_lut, use_latency_table, latency_costs, decision_share, exit_costs_per_image, choose_thresholds,
                            camera_stream, deadline_report, prediction_quality, FRAME_KINDS)

def randomise(m, seed=0):
    "Random BN statistics (marked as trained) and random gates/policies, biases included."
    return _randomise(m, seed, zero_bias=False, mark_trained=True)

@pytest.fixture(scope='module')
def x():
    return torch.randn(48, 3, 32, 32, generator=torch.Generator().manual_seed(1))

@pytest.fixture(scope='module')
def dyn(tmp_path_factory, x):
    "A random DynMoE ResNet-20, its export, both runtimes, thresholds at the median scores."
    m = randomise(DynNet('dynmoe', 'resnet20'))
    folder = export_onnx(m, tmp_path_factory.mktemp('dyn'), mean=(0.5,) * 3, std=(0.25,) * 3)
    with torch.no_grad(): thr = m(torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(2))).exit_scores.median(0).values  # other images: none sits on a threshold
    return m, OrtNet(folder), OrtNet(folder, fused=True), thr

CASES = [('static', {}), ('branchy', dict(policy='confidence')), ('moe', {}), ('moe', dict(route='gumbel')),
         ('dynmoe', {}), ('dynmoe', dict(policy='confidence', measure='entropy')), ('dynmoe', dict(policy='budget_gater', exit_hidden=16)),
         ('dynmoe', dict(route='noisy', expert_width=[0.25, 0.5, 0.5, 1.0])), ('dynmoe', dict(backbone='vgg')),
         ('static', dict(backbone='air')), ('dynmoe', dict(backbone='air', expert_width=0.25))]

@pytest.mark.parametrize('kind,kw', CASES, ids=[f"{k}-{'-'.join(f'{a}={b}' for a, b in kw.items())}" for k, kw in CASES])
def test_runtime_matches_infer(kind, kw, x, tmp_path):
    "Every kind, policy and gate: the ONNX runtime (per-segment and fused) = DynNet.infer: logits, exits, experts, MACs."
    kw = dict(kw); bb = kw.pop('backbone', 'resnet20')
    m = randomise(DynNet(kind, bb, **kw))
    folder = export_onnx(m, tmp_path)
    thr = None
    if m.has_exits:
        with torch.no_grad(): thr = m(x).exit_scores.median(0).values
    for fused in (False, True):
        rt = OrtNet(folder, fused=fused)
        chk = check_against_torch(m, rt, x, thr)
        assert chk['disagree_not_near'] == 0 and chk['same_macs'] >= 1 - chk['near_threshold'] / len(x), chk
        assert chk['max_logit_diff'] < 1e-3, chk
        o = rt.infer(x, thr)
        for j in range(len(x)): assert o.paths[j] == rt.exit_path(int(o.exit[j]), o.experts[j, :, 0].tolist())
        if m.has_exits: assert len(o.exit.unique()) >= 2   # the thresholds really split the batch (median thresholds need not reach every exit)
    if kind == 'static':
        w = OrtNet(folder).infer(x, whole=True)
        assert torch.allclose(w.logits, m.infer(x).logits, atol=1e-3) and (w.macs == m.full_macs()).all()

def test_segment_wrappers_match_modules():
    "The exportable re-expressions (gate top-k, route-or-exit policy, expert path) compute what the modules compute."
    for m in (randomise(DynNet('dynmoe', 'resnet20')), randomise(DynNet('moe', 'vgg', route='gumbel'))):
        segs = {n: v[0] for n, v in segments(m).items()}
        xx = torch.randn(1, 3, 32, 32)
        with torch.no_grad():
            h0 = m.stem(xx); g = m.gates[0](h0.mean((2, 3))); h = m.trunks[0](h0)
            assert set(m.spec.segments()) <= set(segs)
            w, idx = segs['gate.0'](h0)
            assert torch.equal(idx, g.idx) and torch.allclose(w, g.weights, atol=1e-6)
            e = int(idx[0, 0])
            ref = m.bodies[0](h, g.weights, g.idx)
            assert torch.allclose(segs[f'expert.0.{e}'](h, w), ref, atol=1e-5)
            assert torch.allclose(segs[f'trunk.0+expert.0.{e}'](h0, w), ref, atol=1e-5)
            if m.has_exits:
                z, f = segs['exit.0'](ref); d = m.policies[0](f, m.exits[0](ref))
                sc, pw, pidx = segs['policy.0'](f, z)
                assert torch.allclose(sc, d.exit_score, atol=1e-6) and torch.equal(pidx, d.routing.idx)

def test_dynamo_exporter(tmp_path, x):
    "export_onnx(dynamo=True): the torch.export-based exporter gives the same network."
    m = randomise(DynNet('static', 'resnet20'))
    rt = OrtNet(export_onnx(m, tmp_path, dynamo=True, fused=False))
    assert rt.meta['exporter'] == 'dynamo' and rt.meta['opset'] == 23
    ref = m.infer(x[:8])
    for whole in (False, True): assert torch.allclose(rt.infer(x[:8], whole=whole).logits, ref.logits, atol=1e-3)

def test_deadline(dyn, x):
    "No time at all: every image leaves at the first exit, forced; unlimited time: as without a deadline."
    m, rt, rtf, thr = dyn
    lut = measure_lut(rt, x[:1], repeats=3, warmup=1)
    for r in (rt, rtf):
        free = r.infer(x, thr)
        zero = r.infer(x, thr, deadline_ms=0.0, lut=lut)
        assert (zero.exit == 0).all() and zero.forced.sum() == (free.exit > 0).sum()
        inf = r.infer(x, thr, deadline_ms=float('inf'), lut=lut)
        assert torch.equal(inf.exit, free.exit) and not inf.forced.any()
    with pytest.raises(ValueError, match='needs a latency table'): rt.infer(x[:1], thr, deadline_ms=1.0)

def test_lut_and_loss_costs(dyn, x):
    "The LUT has macs_table()'s keys; exit costs priced with it; the MAC table gives exit_costs back exactly."
    m, rt, rtf, thr = dyn
    lut = measure_lut(rt, x[:1], repeats=3, warmup=1)
    assert set(lut['segments']) == set(rt.sessions) and all(v > 0 for v in lut['segments'].values())
    table = use_latency_table(m, lut)
    mt = m.macs_table()
    assert list(table) == list(mt) == m.spec.segments() and m.full_macs(table) > table['stem']
    with torch.no_grad(): out = m(x[:8])
    c = exit_costs(m, out, table)
    assert c.shape == (8, m.K) and (c > 0).all() and (c <= 1).all() and (c.diff(dim=1) > 0).all()
    assert torch.equal(exit_costs(m, out, mt), exit_costs(m, out))
    assert torch.allclose(latency_costs(m, lut)(m, out), c)
    assert m.macs_table() is mt    # pricing in ms leaves the MAC table alone
    ds = decision_share(lut)
    assert set(ds['decision_ms']) == {'gate.0', 'policy.0', 'policy.1'} and 0 < ds['total_share'] < 1
    deepest = m.spec.exit_path(m.K - 1, [0] * m.S)
    assert ds['full_ms'] == pytest.approx(sum(lut['segments'][n] for n in deepest))

def test_prediction_and_paths(dyn, x):
    "LUT path sums: fused graphs cost their own entry, or the sum of their segments; MAC path sums = DynNet.infer's MACs."
    m, rt, rtf, thr = dyn
    seg = {'a': 1.0, 'b': 2.0, 'a+b': 2.5}
    assert graph_cost('a+b', seg) == 2.5 and graph_cost('b+a', {'a': 1.0, 'b': 2.0}) == 3.0
    o = rt.infer(x, thr)
    assert (torch.from_numpy(path_cost(o.paths, rt.macs)).long() == m.infer(x, thr).macs).all()
    with torch.no_grad(): out = m(x)
    experts = torch.stack([r.idx[:, 0] for r in out.routings], 1)
    cm = exit_costs_per_image(rt.meta, rt.macs, experts)
    assert np.array_equal(cm[np.arange(len(x)), o.exit.numpy()], o.macs.numpy())
    assert np.array_equal(cm, m.path_macs(experts[..., None]).numpy())           # the same sums as chapter 06's
    assert np.array_equal(exit_costs_per_image(rt.meta, rt.macs, experts, fused=True), cm)   # fused graphs: their parts
    assert fused_path(m.spec.exit_path(1, [2, 3])) == ['stem+gate.0', 'trunk.0+expert.0.2', 'exit.0+policy.0',
                                                       'trunk.1+expert.1.3', 'exit.1+policy.1']
    q = prediction_quality(np.array([1., 2., 3.]), np.array([1.1, 2.2, 3.3]))
    assert q['pearson_r'] == pytest.approx(1.0) and q['median_rel_error'] == pytest.approx(0.1)

def test_choose_thresholds():
    "Cheapest setting reaching the target; the most accurate one when the target is out of reach."
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.9], [0.2, 0.3], [0.1, 0.2]])
    correct = torch.tensor([[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 1]]).bool()
    cost = np.tile([1.0, 2.0, 3.0], (4, 1))
    r = choose_thresholds(scores, correct, cost, 1.0, grid=9)
    assert r['matched'] and r['acc'] == 1.0 and r['exit_hist'] == [1, 1, 2] and r['cost'] == pytest.approx(2.25)
    r = choose_thresholds(scores, correct, cost, 0.5, grid=9)
    assert r['matched'] and r['cost'] < 2.25
    hard = torch.zeros(4, 3, dtype=torch.bool); hard[0, 2] = True       # only image 0, only at the final exit, is right
    r = choose_thresholds(scores, hard, cost, 0.5, grid=9)
    assert not r['matched'] and r['acc'] == 0.25 and r['cost'] == pytest.approx(2.25)   # the most accurate, then the cheapest
    with pytest.raises(ValueError, match='need scores'): choose_thresholds(scores, correct[:, :2], cost, 1.0)

def test_camera_stream_and_report():
    fr, y, kind, src = camera_stream(64, severity=5, seed=3)
    assert fr.dtype == torch.uint8 and fr.shape == (64, 3, 32, 32) and set(kind.tolist()) <= {0, 1, 2}
    clean, _, _ = sample_images(64, 'test', None, 3)
    assert torch.equal(fr[kind == 0], clean[kind == 0]) and not torch.equal(fr[kind > 0], clean[kind > 0])
    class O: pass
    o = O(); o.logits = torch.eye(10)[y]; o.ms = torch.linspace(0.5, 1.5, 64).double(); o.exit = torch.zeros(64, dtype=torch.long); o.forced = torch.zeros(64, dtype=torch.bool)
    r = deadline_report(o, y, 1.0, kind)
    assert r['all']['acc'] == 1.0 and 0.4 < r['all']['miss_rate'] < 0.6 and r['all']['acc_on_time'] == pytest.approx(1 - r['all']['miss_rate'])
    assert set(r) - {'all'} <= set(FRAME_KINDS)
    with pytest.raises(ValueError, match='mix must hold 3 probabilities'): camera_stream(8, mix=(0.5, 0.5))

def test_bad_input(dyn, tmp_path, x, monkeypatch):
    m, rt, rtf, thr = dyn
    fresh = DynNet('dynmoe', 'resnet20')
    assert not is_trained(fresh) and is_trained(m)
    with pytest.raises(ValueError, match='looks untrained'): export_onnx(fresh, tmp_path/'a')
    export_onnx(fresh, tmp_path/'b', allow_untrained=True, fused=False)        # allowed when asked for
    with pytest.raises(ValueError, match='missing 1'):
        sd = m.state_dict(); sd.pop('final.fc.bias'); export_onnx(DynNet('dynmoe'), tmp_path/'c', state=sd)
    with pytest.raises(ValueError, match='shape mismatches'): load_weights(DynNet('dynmoe', n_experts=2), m.state_dict())
    with pytest.raises(ValueError, match='unexpected'): load_weights(DynNet('static'), m.state_dict())
    with pytest.raises(TypeError, match='state dict or a checkpoint'): load_weights(DynNet('dynmoe'), [1, 2])
    ok = load_weights(DynNet('dynmoe'), m.state_dict())
    assert torch.equal(ok.final.fc.weight, m.final.fc.weight) and is_trained(ok)
    with pytest.raises(ValueError, match=r'top-1 routing only \(k=1\)'): export_onnx(DynNet('dynmoe', k=2), tmp_path/'d', allow_untrained=True)
    with pytest.raises(TypeError, match='exports a dynmoe.models.DynNet'): export_onnx(nn.Linear(2, 2), tmp_path/'e')
    with pytest.raises(FileNotFoundError, match='export_onnx first'): OrtNet(tmp_path/'nothing')
    with pytest.raises(ValueError, match='without fused graphs'): OrtNet(tmp_path/'b', fused=True)
    with pytest.raises(ValueError, match='exported for 32x32 images'): rt.infer(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'): rt.infer(torch.randn(3, 32, 32))
    with pytest.raises(TypeError, match='normalised float images'): rt.infer(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match='expected 2 exit thresholds'): rt.infer(x[:1], [0.5])
    with pytest.raises(ValueError, match='only static networks'): rt.infer(x[:1], whole=True)
    lut = measure_lut(rt, repeats=2, warmup=0)
    with pytest.raises(ValueError, match='measured on a dynmoe resnet20'): use_latency_table(DynNet('static'), lut)
    with pytest.raises(ValueError, match='not a latency table'): use_latency_table(m, {'segments': {}})
    with pytest.raises(ValueError, match='does not fit'): rt.infer(x[:1], thr, deadline_ms=1.0, lut={'stem': 0.1})
    with pytest.raises(ValueError, match='equal-length'): prediction_quality(np.ones(3), np.ones(2))
    assert rt.preprocess(torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)).allclose(torch.full((1, 3, 32, 32), 2.0))
    with pytest.raises(ValueError, match='carries no normalisation'): OrtNet(tmp_path/'b').preprocess(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)   # onnxruntime not installed
    with pytest.raises(ImportError, match='pip install onnxruntime'): require_onnxruntime()
    with pytest.raises(ImportError, match='pip install onnxruntime'): OrtNet(tmp_path/'b')

# ---------------------------------------------------------------------------------------------- stage-graph runtime
from dynmoe.export import export_stages, StageNet, TorchStages, weight_is_one, _routers, UNIT_WEIGHT
from dynmoe.exits import fit_thresholds
from dynmoe.models import BACKBONES

STAGE_CASES = [('dynmoe', {}), ('dynmoe', dict(policy='exit_then_route')), ('dynmoe', dict(policy='confidence')),
               ('dynmoe', dict(policy='budget_gater', expert_width=[0.25, 0.5, 0.5, 1.0])), ('moe', {}),
               ('branchy', dict(policy='confidence')), ('static', {}), ('dynmoe', dict(backbone='vgg'))]
STAGE_CASES += [('dynmoe', dict(backbone=b)) for b in ('airres', 'air') if b in BACKBONES]   # max-pooled, scaled exit heads

def _fitted(m, seed=7):
    "Thresholds fitted on other images so that every exit is taken (None without exits)."
    if not m.has_exits: return None
    with torch.no_grad(): s = m(torch.randn(256, 3, 32, 32, generator=torch.Generator().manual_seed(seed))).exit_scores
    return fit_thresholds(s.float(), [1 / m.K] * m.K)

@pytest.mark.parametrize('kind,kw', STAGE_CASES, ids=[f"{k}-{'-'.join(f'{a}={b}' for a, b in kw.items())}" for k, kw in STAGE_CASES])
def test_stage_runtime_matches_infer(kind, kw, x, tmp_path):
    "StageNet (onnxruntime, IO binding) and TorchStages (frozen TorchScript) = DynNet.infer: predictions, exits, experts, MACs."
    kw = dict(kw); bb = kw.pop('backbone', 'resnet20')
    m = randomise(DynNet(kind, bb, **kw))
    thr = _fitted(m)
    rt = StageNet(export_stages(m, tmp_path, bare=True))
    for r in (rt, TorchStages(m)):
        chk = check_against_torch(m, r, x, thr)
        assert chk['disagree_not_near'] == 0 and chk['same_macs'] >= 1 - chk['near_threshold'] / len(x), chk
        assert chk['same_exit'] >= 0.97 and chk['max_logit_diff'] < 1e-3, chk   # random nets: many scores sit near
    o, ref = rt.infer(x, thr), m.infer(x, thr)
    ok = ref.exit == o.exit
    assert ok.float().mean() >= 0.9 and torch.equal(o.macs[ok], ref.macs[ok])
    for j in range(len(x)): assert len(o.paths[j]) == 2 + rt.spec.exit_stage(int(o.exit[j]))   # one call per stage
    if m.has_exits: assert len(o.exit.unique()) >= 2
    rt.replay(x[:1].numpy(), int(o.exit[0]), o.experts[0, :, 0].tolist())   # the full graphs replay a given path too
    StageNet(tmp_path, bare=True).replay(x[:1].numpy(), int(o.exit[0]), o.experts[0, :, 0].tolist())

def test_stage_unit_weight(x, tmp_path):
    "The gate-weight multiply is left out only where the weight is exactly 1: renormalising gates, or the model's flag."
    m = randomise(DynNet('dynmoe', 'resnet20'))
    assert not weight_is_one(m) and weight_is_one(DynNet('static'))
    with pytest.raises(ValueError, match='not exactly 1'): export_stages(m, tmp_path/'a', unit_weight=True)
    for g in _routers(m): g.renorm = True
    assert weight_is_one(m)
    rt = StageNet(export_stages(m, tmp_path/'b'))
    assert not rt.meta['weighted'] and [i.name for i in rt.sessions['stage.1.2'].get_inputs()] == ['h']
    assert check_against_torch(m, rt, x, _fitted(m))['disagree_not_near'] == 0
    assert StageNet(export_stages(m, tmp_path/'c', unit_weight=False)).meta['weighted']   # kept on request
    f = randomise(DynNet('dynmoe', 'resnet20'))
    setattr(f, UNIT_WEIGHT, True)   # the hook a unit-weight-trained model sets
    assert weight_is_one(f) and not StageNet(export_stages(f, tmp_path/'d')).meta['weighted']

def test_stage_bad_input(x, tmp_path, monkeypatch):
    "Clear errors: no export, no bare graphs, k > 1, untrained, wrong shape or dtype, wrong thresholds, onnxruntime missing."
    m = randomise(DynNet('dynmoe', 'resnet20'))
    rt = StageNet(export_stages(m, tmp_path/'a'))
    with pytest.raises(FileNotFoundError, match='export_stages first'): StageNet(tmp_path/'nothing')
    with pytest.raises(ValueError, match='without bare graphs'): StageNet(tmp_path/'a', bare=True)
    with pytest.raises(ValueError, match=r'top-1 routing only \(k=1\)'): export_stages(DynNet('dynmoe', k=2), tmp_path/'b', allow_untrained=True)
    with pytest.raises(ValueError, match=r'top-1 routing only \(k=1\)'): TorchStages(DynNet('dynmoe', k=2))
    with pytest.raises(ValueError, match='looks untrained'): export_stages(DynNet('dynmoe'), tmp_path/'c')
    with pytest.raises(ValueError, match='exported for 32x32 images'): rt.infer(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'): rt.infer(torch.randn(3, 32, 32))
    with pytest.raises(TypeError, match='normalised float images'): rt.infer(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(TypeError, match='normalised float images'): TorchStages(m).infer(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match='expected 2 exit thresholds'): rt.infer(x[:1], [0.5])
    with pytest.raises(ValueError, match='bare graphs hold no decisions'): StageNet(export_stages(m, tmp_path/'d', bare=True), bare=True).infer(x[:1])
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)
    with pytest.raises(ImportError, match='pip install onnxruntime'): StageNet(tmp_path/'a')
