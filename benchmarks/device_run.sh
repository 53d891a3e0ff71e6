#!/bin/bash
# What ran on the lent GPU (an H200, through the `device` tool) on 2026-11-28, from the repo root, with .dev/ and
# .whl/ carried (both git-ignored):
#   .dev/cifar_pack  python benchmarks/pack_cifar.py pack ../shared/data/cifar-10-batches-py .dev/cifar_pack
#   .dev/commit      git rev-parse --short=12 HEAD (the device copy has no .git of its own)
#   .whl/            wheels of fastcore, fastprogress 1.0.3, fvcore, iopath, yacs, termcolor (not on that image)
# Then:
#   bash benchmarks/device_run.sh width    # -> $OUT/sweep_air_width.json  (data/results/device/sweep_air_width_h200.json)
#   bash benchmarks/device_run.sh epochs   # -> $OUT/sweep_air_epochs.json (..._epochs_h200.json), $OUT/pytest_cuda.log
# Each also runs the package's pytest suite (all but the notebook and packaging tests) in the background, with CUDA
# visible, so that every device='auto' in it is the GPU: $OUT/pytest_cuda.log (data/results/device/pytest_cuda_h200.log
# is the 'epochs' call's; the 'width' call's pytest did not start, a plugin given twice).
set -u
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
what=${1:?width or epochs}
t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/gpu.txt
python3 -c "import torch, dynmoe.train, fvcore; print(torch.__version__, torch.cuda.get_device_name())" 2>&1 | tee -a $OUT/gpu.txt || exit 1
python3 benchmarks/pack_cifar.py unpack .dev/cifar_pack /tmp/data/cifar-10-batches-py || exit 1
( OMP_NUM_THREADS=4 timeout 330 python3 -m pytest -q -p no:cacheprovider --timeout 150 tests \
    --ignore=tests/test_notebooks.py --ignore=tests/test_package.py -rfE > $OUT/pytest_cuda.log 2>&1
  echo "pytest rc=$?" >> $OUT/pytest_cuda.log ) &
note="code of commit $(cat .dev/commit) (the device copy has no .git); data: ../shared/data packed by benchmarks/pack_cifar.py (quality-95 4:4:4 JPEG mosaics, PSNR 46.8 dB against it)"
if [ "$what" = width ]; then   # the same CPU minutes as 9 epochs of air: epochs per width from data/results/bench_width_air.json
  V="base;x0.75_e13:backbone=air_x0.75,epochs=13.05,warmup_epochs=3.0,whiten_epochs=4"
  V="$V;x1.25_e6.3:backbone=air_x1.25,epochs=6.31,warmup_epochs=1.45,whiten_epochs=2"
  V="$V;x1.5_e4.7:backbone=air_x1.5,epochs=4.69,warmup_epochs=1.08,whiten_epochs=2"
  timeout 400 python3 benchmarks/recipe_sweep.py --data-dir /tmp/data --device cuda --preset air --seeds 0,1,2,3 \
    --air-scales 0.75,1.25,1.5 --variants "$V" --out $OUT/sweep_air_width.json \
    --note "$note; epochs per width from data/results/bench_width_air.json (same CPU minutes as 9 epochs of air)"
else                           # what more epochs (a faster CPU step) would buy, and label smoothing 0.1
  V="base;e10.5:epochs=10.5,warmup_epochs=2.41,whiten_epochs=3;e12:epochs=12,warmup_epochs=2.76,whiten_epochs=4"
  V="$V;ls0.1:label_smoothing=0.1"
  timeout 370 python3 benchmarks/recipe_sweep.py --data-dir /tmp/data --device cuda --preset air --seeds 0,1,2,3,4 \
    --variants "$V" --out $OUT/sweep_air_epochs.json --note "$note; what more epochs (a faster CPU step) would buy, and label smoothing 0.1"
fi 2>&1 | tee $OUT/sweep.log
wait
tail -5 $OUT/pytest_cuda.log
echo "all done at $(( $(date +%s) - t0 )) s"
