#!/usr/bin/env python3
"""Writes a randomly initialised DALL-E encoder state dict (upstream's init: conv weights
N(0, 1 / (in * k^2)), zero biases) with torch.save, for configs whose `DALL-E` target
generator names a local `init_cfg.checkpoint` when the pretrained OpenAI/MMSelfSup file
(dalle_encoder.pth) is not at hand, e.g. the Fashion-MNIST CAE config:

    python3 tools/make_dalle_weights.py work_dirs/dalle_fmnist_random.pth \
        --n-hid 64 --n-blk-per-group 1 --input-channels 1 --vocab-size 512

Needs only PyTorch. Keys as upstream: blocks.input.{w,b},
blocks.group_<g>.block_<i>.{id_path,res_path.conv_<j>}.{w,b}, blocks.output.conv.{w,b}.
"""
import argparse
import math
import os

import torch


def conv(out, prefix, n_in, n_out, kw, gen):
    w = torch.empty(n_out, n_in, kw, kw).normal_(0, 1 / math.sqrt(n_in * kw * kw),
                                                  generator=gen)
    out[prefix + '.w'] = w
    out[prefix + '.b'] = torch.zeros(n_out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('output')
    p.add_argument('--n-hid', type=int, default=256)
    p.add_argument('--n-blk-per-group', type=int, default=2)
    p.add_argument('--input-channels', type=int, default=3)
    p.add_argument('--vocab-size', type=int, default=8192)
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args()
    gen = torch.Generator().manual_seed(a.seed)
    out = {}
    conv(out, 'blocks.input', a.input_channels, a.n_hid, 7, gen)
    widths = [a.n_hid, 2 * a.n_hid, 4 * a.n_hid, 8 * a.n_hid]
    for g in range(4):
        for i in range(a.n_blk_per_group):
            n_in = (a.n_hid if g == 0 else widths[g - 1]) if i == 0 else widths[g]
            n_out = widths[g]
            blk = f'blocks.group_{g + 1}.block_{i + 1}'
            if n_in != n_out:
                conv(out, blk + '.id_path', n_in, n_out, 1, gen)
            hid = n_out // 4
            conv(out, blk + '.res_path.conv_1', n_in, hid, 3, gen)
            conv(out, blk + '.res_path.conv_2', hid, hid, 3, gen)
            conv(out, blk + '.res_path.conv_3', hid, hid, 3, gen)
            conv(out, blk + '.res_path.conv_4', hid, n_out, 1, gen)
    conv(out, 'blocks.output.conv', 8 * a.n_hid, a.vocab_size, 1, gen)
    os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
    torch.save(out, a.output)
    print(f'{a.output}: {len(out)} tensors')


if __name__ == '__main__':
    main()
