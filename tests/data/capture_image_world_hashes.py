"""Reference hashes of the image world, to prove a faster renderer draws the same images bit for bit.

``tests/data/image_world_hashes.json`` was written by this script from the renderer of
WORLD_VERSION 2 before any speed-up (commit dc7d434); tests/test_images.py recomputes the cases
and compares. Rewrite the file ONLY together with a WORLD_VERSION bump:

    python tests/data/capture_image_world_hashes.py tests/data/image_world_hashes.json
"""
import hashlib
import json
import sys

from helpers.images import BACKGROUNDS, CLASSES, BirdSpecies, CountWorld, ImageWorld, WorldStream, render_class


def digest(*tensors):
    """sha256 of the tensors' dtypes, shapes and bytes."""
    m = hashlib.sha256()
    for t in tensors:
        t = t.contiguous().cpu()
        m.update(str(t.dtype).encode())
        m.update(str(tuple(t.shape)).encode())
        m.update(t.numpy().tobytes())
    return m.hexdigest()


def cases():
    """{name: function returning the tensors hashed}: all three worlds, several seeds and sizes."""
    out = {}
    for size in (24, 32, 48):
        for seed in (0, 1, 7):
            out[f"ImageWorld s{size} seed{seed} n40"] = lambda size=size, seed=seed: ImageWorld(image_size=size).render(40, seed=seed)
    for seed in (2, 5):
        out[f"ImageWorld clutter1 noise0 s32 seed{seed}"] = \
            lambda seed=seed: ImageWorld(image_size=32, noise=0.0, clutter=1.0).render(64, seed=seed)
    out["ImageWorld 3 classes s64 seed3 n17"] = lambda: ImageWorld(image_size=64, classes=("bird", "orca", "sun")).render(17, seed=3)
    out["ImageWorld s40 seed11 n1024"] = lambda: ImageWorld(image_size=40).render(1024, seed=11)
    for size in (32, 48):
        for seed in (0, 4):
            out[f"BirdSpecies s{size} seed{seed}"] = lambda size=size, seed=seed: BirdSpecies(image_size=size).render(48, seed=seed)
    out["BirdSpecies balanced 3 seed1"] = lambda: BirdSpecies(image_size=32).balanced(3, seed=1)

    def count(size, seed):
        x, c, vis = CountWorld(image_size=size).render(32, seed=seed, visibility=True)
        return (x, c, *vis)
    for size in (48, 64):
        for seed in (0, 5):
            out[f"CountWorld s{size} seed{seed} vis"] = lambda size=size, seed=seed: count(size, seed)
    out["CountWorld 2-4 s64 seed9"] = lambda: CountWorld(image_size=64, min_birds=2, max_birds=4).render(20, seed=9)
    for name in ("orca", "bird", "kite", "flower"):
        out[f"render_class {name} s32"] = lambda name=name: (render_class(name, 8, seed=2),)
    for cls in CLASSES:
        for bg in BACKGROUNDS:
            out[f"one {cls} {bg}"] = lambda cls=cls, bg=bg: ImageWorld(image_size=32, classes=(cls,), backgrounds=(bg,)).render(3, seed=len(cls))
    out["WorldStream"] = lambda: tuple(t for b in WorldStream(ImageWorld(image_size=24), batch_size=8, steps=3, seed=1, chunk=16) for t in b)
    return out


if __name__ == "__main__":
    hashes = {name: digest(*make()) for name, make in cases().items()}
    with open(sys.argv[1], "w") as f:
        json.dump(hashes, f, indent=1, sort_keys=True)
    print(len(hashes), "cases")
