#!/usr/bin/env python3
"""MMSelfSup 1.0's SwAV multi-crop training step for selfsup_bench (upstream's bench_train.py
times SwAV on two 32x32 crops only, num_crops [2]; this times the multi-crop recipe).

The model is upstream's own: configs/selfsup/_base_/models/swav.py read by mmengine, with
bench_train.py's edits for 32x32 images (ResNet-18 with the CIFAR stem, `mmcls.ResNet_CIFAR`,
zero_init_residual as the base config; neck in_channels 512; SyncBN -> BN) and num_crops
[2, 6] kept. The batch holds 2 crops of 32x32 and 6 of SMALLxSMALL (14: 224/96 of 32, the
ratio of the ImageNet recipe's 224 and 96 px crops), uint8, made once (data loading
excluded). A step is upstream's `model.train_step(data, optim_wrapper)`: its data
preprocessor, SwAV.loss (the crops grouped by size through the backbone, as upstream does),
backward, SGD step, zero_grad. Timing, the quiet wait and the foreign load come from
bench_train.py (imported from the anchors folder on PYTHONPATH), so this row is measured as
the other MMSelfSup rows.

Usage (PYTHONPATH = MMSelfSup's + the anchors folder):
  /usr/bin/python3 mmselfsup_swav.py [--batch 256] [--small 14] [--warmup 2] [--iters 5]
                                     --json OUT
Writes bench_train.py's JSON layout: {"rows": [{"step_times", "step_foreign", "last_loss",
...}]}.
"""
import argparse
import copy
import json

import torch

import bench_train as bt  # upstream's bench (anchors folder), sets 2 threads

from mmengine.optim import OptimWrapper  # noqa: E402
from mmselfsup.registry import MODELS  # noqa: E402
from mmselfsup.structures import SelfSupDataSample  # noqa: E402


def swav_cfg():
    m = bt.load('swav.py')
    m.backbone = bt.r18_cifar(True)
    m.neck.in_channels = 512
    assert list(m.head.loss.num_crops) == [2, 6]
    return bt.cpu_bn(m)


def make_data(batch, small, seed=0):
    g = torch.Generator().manual_seed(seed)
    sizes = [32, 32] + [small] * 6
    inputs = [
        torch.randint(0, 256, (batch, 3, s, s), generator=g, dtype=torch.uint8)
        for s in sizes
    ]
    return dict(inputs=inputs,
                data_samples=[SelfSupDataSample() for _ in range(batch)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--batch', type=int, default=256)
    ap.add_argument('--small', type=int, default=14)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--iters', type=int, default=5)
    ap.add_argument('--json', required=True)
    args = ap.parse_args()

    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(swav_cfg()))
    model.init_weights()
    model.train()
    ow = OptimWrapper(optimizer=bt.make_sgd(model.parameters()))
    data = make_data(args.batch, args.small)
    last = {}

    def step():
        d = dict(inputs=[x.clone() for x in data['inputs']],
                 data_samples=data['data_samples'])
        log_vars = model.train_step(d, ow)
        last['loss'] = float(log_vars['loss'])

    ts = bt.time_steps(step, args.warmup, args.iters)
    row = dict(algo='swav', views=8, step_times=ts, last_loss=last.get('loss'),
               small=args.small, **bt.LAST_LOAD)
    with open(args.json, 'w') as f:
        json.dump(dict(args=vars(args), rows=[row]), f, indent=1)
    print(f"swav multi-crop: step times {ts} loss {last.get('loss')}", flush=True)


if __name__ == '__main__':
    main()
