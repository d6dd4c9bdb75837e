"""How close the fast encoder paths are to stock on the real vit_b architecture (RANDOM weights: agreement, not
quality): features against ``SamPredictor.set_image`` and best masks for five point prompts.

Usage: python benchmarks/encoder_agreement.py   (about 2 minutes on a 2-core CPU)
       python benchmarks/encoder_agreement.py --arch tiny   (a 2-block ViT: a smoke run of the script itself)
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
from segment_anything import SamPredictor

from clicklabel.bench.harness import sample_image
from clicklabel.embeddings import EmbeddingCache
from clicklabel.masks import mask_iou
from clicklabel.segment import Prompt
from clicklabel.segment.sam import SamEngine
from clicklabel.weights import save_random_checkpoint

POINTS = [(320, 240), (100, 100), (500, 380), (200, 300), (600, 50)]


ARCHS = {"vit_b": "vit_b", "vit_l": "vit_l", "vit_h": "vit_h", "tiny": (64, 2, 2, (1,))}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=list(ARCHS), default="vit_b")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ck = save_random_checkpoint(Path(tmp) / "random.pth", ARCHS[args.arch], seed=0)
        img = sample_image()
        stock = SamEngine("auto", ck, device="cpu", cache=EmbeddingCache(disk=False), fast=False)
        pred = SamPredictor(stock.sam)
        pred.set_image(img)
        ref = pred.features.numpy()
        stock.set_embedding(stock.encode(img))
        for name, precision in (("fp32 + SDPA", "fp32"), ("bf16 + SDPA", "bf16")):
            eng = SamEngine("auto", ck, device="cpu", cache=EmbeddingCache(disk=False), sam=stock.sam, fast=True,
                            precision=precision)
            emb = eng.encode(img)
            eng.set_embedding(emb)
            pairs = [(stock.predict(Prompt.make([p]))[0].mask, eng.predict(Prompt.make([p]))[0].mask) for p in POINTS]
            print(f"{name}: max |features - SamPredictor's| = {np.abs(emb.features - ref).max():.2e}; "
                  f"{len(POINTS)} point prompts: min mask IoU {min(mask_iou(a, b) for a, b in pairs):.5f}, "
                  f"identical masks {sum(int((a == b).all()) for a, b in pairs)}/{len(POINTS)}")


if __name__ == "__main__":
    main()
