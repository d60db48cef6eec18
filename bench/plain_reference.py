#!/usr/bin/env python3
"""Plain-PyTorch reference for selfsup_bench: a SimCLR training step as a Python user would
write it without any framework, with the fastest settings they would pick on this CPU.

ResNet-18 with the CIFAR stem (3x3 stride-1 stem conv, no max-pool), NonLinearNeck-like
projector 512 -> 2048 -> 128 (BN after each linear), NT-Xent loss at temperature 0.1, SGD
(lr 0.03, momentum 0.9, weight decay 1e-4), batch 256 of two 32x32 uint8 views made once
(data loading excluded, as in the other rows), 2 threads. Modes: fp32, or bf16_cl: bf16
autocast with the model and inputs in channels-last. Each timed step waits (bounded) for a
quiet machine and records the CPU that other processes used during it.

Usage: /usr/bin/python3 plain_reference.py --mode fp32|bf16_cl [--iters 5] [--warmup 2]
                                           [--quiet-wait 5] --json OUT
"""
import argparse
import json
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(2)
HZ = os.sysconf('SC_CLK_TCK')


def busy_jiffies():
    with open('/proc/stat') as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


def own_cpu():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Load:
    """CPU used by other processes during a window, in cores."""

    def __enter__(self):
        self.t, self.b, self.s = time.perf_counter(), busy_jiffies(), own_cpu()
        return self

    def __exit__(self, *exc):
        wall = max(1e-6, time.perf_counter() - self.t)
        busy = (busy_jiffies() - self.b) / HZ
        self.foreign = max(0.0, (busy - (own_cpu() - self.s)) / wall)
        return False


def wait_quiet(max_wait):
    end = time.perf_counter() + max_wait
    while time.perf_counter() < end:
        with Load() as w:
            time.sleep(1.0)
        if w.foreign < 0.15:
            return


def conv_bn(cin, cout, k, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
                         nn.BatchNorm2d(cout))


class Block(nn.Module):

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.a = conv_bn(cin, cout, 3, stride)
        self.b = conv_bn(cout, cout, 3, 1)
        self.short = (conv_bn(cin, cout, 1, stride)
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        y = F.relu(self.a(x), inplace=True)
        return F.relu(self.b(y) + self.short(x), inplace=True)


class Encoder(nn.Module):

    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 64, 3, 1)
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [Block(cin, cout, stride), Block(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        return self.blocks(F.relu(self.stem(x), inplace=True)).mean((2, 3))


class SimCLR(nn.Module):

    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.projector = nn.Sequential(
            nn.Linear(512, 2048, bias=False), nn.BatchNorm1d(2048), nn.ReLU(inplace=True),
            nn.Linear(2048, 128, bias=False), nn.BatchNorm1d(128))

    def forward(self, x1, x2, temperature=0.1):
        z = F.normalize(self.projector(self.encoder(torch.cat([x1, x2]))), dim=1)
        n = x1.shape[0]
        logits = (z @ z.t()).float() / temperature
        logits.fill_diagonal_(float('-inf'))
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
        return F.cross_entropy(logits, target)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--mode', choices=['fp32', 'bf16_cl'], required=True)
    ap.add_argument('--iters', type=int, default=5)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--batch', type=int, default=256)
    ap.add_argument('--quiet-wait', type=float, default=5.0)
    ap.add_argument('--json', required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    bf16 = args.mode == 'bf16_cl'
    fmt = torch.channels_last if bf16 else torch.contiguous_format
    model = SimCLR().train().to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    raw = [torch.randint(0, 256, (args.batch, 3, 32, 32), dtype=torch.uint8)
           for _ in range(2)]
    last = {}

    def step():
        # BGR -> RGB and normalisation, as the frameworks' data preprocessors do
        x1, x2 = [((r.flip(1).float() - mean) / std).contiguous(memory_format=fmt)
                  for r in raw]
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            loss = model(x1, x2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        last['loss'] = float(loss)

    for _ in range(args.warmup):
        step()
    times, foreign = [], []
    for _ in range(args.iters):
        wait_quiet(args.quiet_wait)
        with Load() as w:
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        foreign.append(w.foreign)
    with open(args.json, 'w') as f:
        json.dump(dict(mode=args.mode, step_times=times, step_foreign=foreign,
                       loss=last['loss'], torch=torch.__version__), f)


if __name__ == '__main__':
    main()
