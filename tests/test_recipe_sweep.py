"The parsing and summary helpers of benchmarks/recipe_sweep.py (the training itself is exercised by test_train.py)."
import pytest
import fastcore.test as ft

def test_parse_variants(load_benchmark):
    s = load_benchmark('recipe_sweep')
    ft.test_eq(s.parse_variants('base; b512:batch_size=512,lr=0.75 ;m:muon_lr=0.12,flip=alternate'),
               {'base': {}, 'b512': {'batch_size': 512, 'lr': 0.75}, 'm': {'muon_lr': 0.12, 'flip': 'alternate'}})
    for bad, msg in (('', 'empty'), ('a:lr=1;a:lr=2', 'new name'), (':lr=1', 'new name'), ('a:lr', 'key=value'),
                     ('a:seed=1', 'seed')):
        with pytest.raises(ValueError, match=msg): s.parse_variants(bad)

def test_summarise(load_benchmark):
    s = load_benchmark('recipe_sweep')
    rows = [dict(variant='a', v=1.0), dict(variant='b', v=None), dict(variant='a', v=3.0), dict(variant='c', v=2.0)]
    out = s.summarise(rows, 'v')
    ft.test_eq(out['a'], dict(mean=2.0, std=2**0.5, n=2))
    ft.test_eq(out['b'], dict(mean=None, std=None, n=0))     # runs without validation images
    ft.test_eq(out['c'], dict(mean=2.0, std=None, n=1))       # one seed: no spread
    ft.test_eq(list(out), ['a', 'b', 'c'])                     # in the order the variants ran

def test_parse_variants_epochs(load_benchmark):
    "A variant's own epochs (a wider network given the fewer epochs that fit the same minutes)."
    s = load_benchmark('recipe_sweep')
    ft.test_eq(s.parse_variants('a:backbone=air_x1.25,epochs=6.3;b:epochs=9'),
               {'a': {'backbone': 'air_x1.25', 'epochs': 6.3}, 'b': {'epochs': 9}})
    with pytest.raises(ValueError, match="epochs must be a number, got 'six'"): s.parse_variants('a:epochs=six')
