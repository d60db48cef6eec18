#!/usr/bin/env python3
"""MMSelfSup 1.0's own SimCLR train pipeline over a folder of JPEG files (for selfsup_bench).

The pipeline is upstream's train_pipeline of configs/selfsup/_base_/datasets/imagenet_simclr.py
unchanged (LoadImageFromFile, MultiView of two 224-px views: RandomResizedCrop (pillow),
RandomFlip, RandomApply(ColorJitter), RandomGrayscale, RandomGaussianBlur;
PackSelfSupInputs), built with upstream's registry, run in this one process over every *.jpg
below --root, cycling for at least --seconds. Prints and writes source images per second.

Usage (MMSelfSup 1.0 on PYTHONPATH): /usr/bin/python3 mmselfsup_jpeg.py --root DIR --json OUT
"""
import argparse
import glob
import json
import os
import time

import torch

torch.set_num_threads(1)

import mmselfsup  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import Compose  # noqa: E402
from mmselfsup.utils import register_all_modules  # noqa: E402

register_all_modules(init_default_scope=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--root', required=True)
    ap.add_argument('--seconds', type=float, default=4.0)
    ap.add_argument('--json', required=True)
    args = ap.parse_args()
    cfg = Config.fromfile(os.path.join(
        os.path.dirname(os.path.dirname(mmselfsup.__file__)), 'configs', 'selfsup', '_base_',
        'datasets', 'imagenet_simclr.py'))
    pipeline = Compose(cfg.train_pipeline)
    files = sorted(glob.glob(os.path.join(args.root, '**', '*.jpg'), recursive=True))
    if not files:
        raise SystemExit(f'no *.jpg below {args.root}')
    for f in files[:4]:  # warm-up
        pipeline(dict(img_path=f))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        out = pipeline(dict(img_path=files[n % len(files)]))
        n += 1
    dt = time.perf_counter() - t0
    shapes = [tuple(v.shape) for v in out['inputs']]
    print(f'MMSelfSup JPEG pipeline: {n / dt:.1f} img/s over {len(files)} files; views {shapes}')
    with open(args.json, 'w') as f:
        json.dump(dict(img_per_s=n / dt, images=n, files=len(files), views=shapes), f)


if __name__ == '__main__':
    main()
