import torch, numpy as np
from httm_ros.train.data import ClipPool
pool = ClipPool((56, 196), 'cpu', seed=5, size=16, reuse=8, clip_frames=8)
ok = 0; n = 0; stds = []
imgs = []
for step in range(20):
    rng = np.random.default_rng([step, 3]); B = 16
    img = pool.batch(rng, 1, B)['images'][:, 0]
    imgs.append(img[:4])
    for b in range(B):
        f0 = img[b, :, :, 56:140]
        k = 28
        f1 = img[b, :, :, 56 + k:140 + k]
        # candidate: f1 == f0 shifted by +28 -> f1[..., :56] == f0[..., 28:]
        e_pos = (f1[..., :56] - f0[..., 28:]).abs().mean(); e_neg = (f1[..., 28:] - f0[..., :56]).abs().mean()
        ok += int(e_pos < e_neg); n += 1
        stds.append(f0.std().item())
print("correlation sign accuracy", ok / n, "pixel std median", np.median(stds), "min", min(stds))
from PIL import Image
g = torch.cat(imgs[:4])[:16]; g = g.permute(0,2,3,1).reshape(-1, 196, 3); Image.fromarray((g.clamp(0,1).numpy()*255).astype("uint8")).save("/tmp/diag2/look.png")
