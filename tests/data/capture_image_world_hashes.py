import hashlib, json, sys
import torch
sys.path.insert(0, "/work/main")
from helpers.images import ImageWorld, BirdSpecies, CountWorld, render_class, WorldStream

def h(*ts):
    m = hashlib.sha256()
    for t in ts:
        t = t.contiguous().cpu()
        m.update(str(t.dtype).encode()); m.update(str(tuple(t.shape)).encode())
        m.update(t.numpy().tobytes())
    return m.hexdigest()

cases = {}
for size in (24, 32, 48):
    for seed in (0, 1, 7):
        x, y = ImageWorld(image_size=size).render(40, seed=seed)
        cases[f"ImageWorld s{size} seed{seed} n40"] = h(x, y)
for seed in (2, 5):
    x, y = ImageWorld(image_size=32, noise=0.0, clutter=1.0).render(64, seed=seed)
    cases[f"ImageWorld clutter1 noise0 s32 seed{seed}"] = h(x, y)
x, y = ImageWorld(image_size=64, classes=("bird", "orca", "sun")).render(17, seed=3)
cases["ImageWorld 3 classes s64 seed3 n17"] = h(x, y)
x, y = ImageWorld(image_size=40).render(1024, seed=11)
cases["ImageWorld s40 seed11 n1024"] = h(x, y)
for size in (32, 48):
    for seed in (0, 4):
        x, y = BirdSpecies(image_size=size).render(48, seed=seed)
        cases[f"BirdSpecies s{size} seed{seed}"] = h(x, y)
x, y = BirdSpecies(image_size=32).balanced(3, seed=1)
cases["BirdSpecies balanced 3 seed1"] = h(x, y)
for size in (48, 64):
    for seed in (0, 5):
        x, c, vis = CountWorld(image_size=size).render(32, seed=seed, visibility=True)
        cases[f"CountWorld s{size} seed{seed} vis"] = h(x, c, *vis)
x, c = CountWorld(image_size=64, min_birds=2, max_birds=4).render(20, seed=9)
cases["CountWorld 2-4 s64 seed9"] = h(x, c)
for name in ("orca", "bird", "kite", "flower"):
    cases[f"render_class {name} s32"] = h(render_class(name, 8, seed=2))
for cls in ("bird","orca","fish","whale","boat","plane","balloon","kite","tree","house","sun","leaf","car","flower"):
    for bg in ("sky","sea","grass","clouds","sunset","noise"):
        x, y = ImageWorld(image_size=32, classes=(cls,), backgrounds=(bg,)).render(3, seed=len(cls))
        cases[f"one {cls} {bg}"] = h(x, y)
s = list(WorldStream(ImageWorld(image_size=24), batch_size=8, steps=3, seed=1, chunk=16))
cases["WorldStream"] = h(*[t for b in s for t in b])
json.dump(cases, open(sys.argv[1], "w"), indent=1, sort_keys=True)
print(len(cases))
