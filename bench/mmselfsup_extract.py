#!/usr/bin/env python3
"""MMSelfSup 1.0's feature extraction speed on CPU, for selfsup_bench's extraction rows.

Reads the IDX files selfsup_bench wrote (the same images selfsup extracts), builds MMSelfSup's
SimCLR with mmcls's ResNet_CIFAR (depth 18, the CIFAR stem of the Fashion-MNIST configs) and
runs every image through it the way upstream's kNN benchmark does (mmselfsup's Extractor):
a torch DataLoader over the dataset (PackSelfSupInputs per sample, mmengine's default_collate as its configs,
`--workers` worker processes), model.eval(), torch.no_grad(), data_preprocessor, forward in
'tensor' mode, global average pooling of the last stage, flatten. fp32, as upstream runs.

Each batch is timed (the time waiting for the loader included) together with the CPU that
other processes used during it, so the caller can take the median of the quiet batches.

  source /work/anchors/env.sh
  /usr/bin/python3 bench/mmselfsup_extract.py --root DIR --batch 512 --json OUT.json
"""
import argparse
import gzip
import json
import os
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mmengine.dataset import default_collate
from mmselfsup.datasets.transforms import PackSelfSupInputs
from mmselfsup.registry import MODELS
from mmselfsup.utils import register_all_modules

HZ = os.sysconf('SC_CLK_TCK')


def busy_jiffies():
    with open('/proc/stat') as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)


def own_jiffies():
    """CPU time of this process and of its live children (the loader's workers)."""
    t = os.times()
    total = (t.user + t.system + t.children_user + t.children_system) * HZ
    me = os.getpid()
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open(f'/proc/{d}/stat') as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rfind(')') + 2:].split()
        if int(fields[1]) == me:
            total += int(fields[11]) + int(fields[12])
    return total


def read_idx(path):
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        data = f.read()
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(rank)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * rank).reshape(dims)


class IdxImages(Dataset):
    """The images and labels of an IDX pair, packed as MMSelfSup's pipelines pack them."""

    def __init__(self, root, split):
        prefix = 'train' if split == 'train' else 't10k'
        self.images = read_idx(os.path.join(root, prefix + '-images-idx3-ubyte'))
        self.labels = read_idx(os.path.join(root, prefix + '-labels-idx1-ubyte'))
        self.pack = PackSelfSupInputs(algorithm_keys=['gt_label'])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.pack(
            dict(img=self.images[i][:, :, None].copy(),
                 gt_label=int(self.labels[i])))


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--root', required=True, help='folder of the IDX files')
    p.add_argument('--split', default='train')
    p.add_argument('--batch', type=int, default=512)
    p.add_argument('--workers', type=int, default=1)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--json', required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    register_all_modules(init_default_scope=True)
    model = MODELS.build(
        dict(
            type='SimCLR',
            data_preprocessor=dict(
                type='SelfSupDataPreprocessor',
                mean=[72.94],
                std=[90.0],
                bgr_to_rgb=False),
            backbone=dict(
                type='mmcls.ResNet_CIFAR',
                depth=18,
                in_channels=1,
                out_indices=(3, ),
                norm_cfg=dict(type='BN')),
            neck=dict(
                type='NonLinearNeck',
                in_channels=512,
                hid_channels=512,
                out_channels=128,
                num_layers=2,
                with_avg_pool=True,
                norm_cfg=dict(type='BN1d')),
            head=dict(
                type='ContrastiveHead',
                loss=dict(type='mmcls.CrossEntropyLoss'),
                temperature=0.1)))
    model.eval()
    pool = torch.nn.AdaptiveAvgPool2d(1)
    dataset = IdxImages(a.root, a.split)
    loader = DataLoader(
        dataset,
        batch_size=a.batch,
        shuffle=False,
        num_workers=a.workers,
        persistent_workers=False,
        collate_fn=default_collate)
    times, foreign, sizes = [], [], []
    feats = []
    start = time.perf_counter()
    it = iter(loader)
    while True:
        t0, b0, s0 = time.perf_counter(), busy_jiffies(), own_jiffies()
        try:
            data = next(it)
        except StopIteration:
            break
        with torch.no_grad():
            inputs, samples = model.data_preprocessor(data)
            x = model(inputs, samples, mode='tensor')
            f = pool(x[-1]).view(x[-1].size(0), -1)
        feats.append(f)
        wall = time.perf_counter() - t0
        times.append(wall)
        sizes.append(int(f.size(0)))
        foreign.append(
            max(0.0, (busy_jiffies() - b0 - (own_jiffies() - s0)) / HZ / wall))
    total = time.perf_counter() - start
    n = sum(sizes)
    with open(a.json, 'w') as f:
        json.dump(
            dict(
                images=n,
                seconds=total,
                img_per_s=n / total,
                batch_times=times,
                batch_foreign=foreign,
                batch_sizes=sizes,
                feature_dim=int(torch.cat(feats).size(1))), f)


if __name__ == '__main__':
    main()
