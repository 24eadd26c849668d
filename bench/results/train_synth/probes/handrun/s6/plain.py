# Is the 2-frame shift task learnable by a plain ViT (abs pos + frame embedding, joint attention)?
import sys, time, os, torch, numpy as np, torch.nn as nn
torch.set_num_threads(1)
from httm_ros.train.data import ClipPool
TASK = os.environ.get("TASK", "sign"); STEPS = int(os.environ.get("STEPS", 500))
class Plain(nn.Module):
    def __init__(s, d=128, depth=6, heads=4):
        super().__init__()
        s.embed = nn.Linear(3 * 14 * 14, d); s.pos = nn.Parameter(torch.randn(1, 1, 24, d) * .02)
        s.frame = nn.Parameter(torch.randn(1, 2, 1, d) * .02); s.cls = nn.Parameter(torch.randn(1, 1, d) * .02)
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
        s.enc = nn.TransformerEncoder(layer, depth); s.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 1))
    def forward(s, x):                                   # x [B,2,3,56,84]
        B = x.shape[0]
        p = x.unfold(3, 14, 14).unfold(4, 14, 14)         # B,2,3,4,6,14,14
        p = p.permute(0, 1, 3, 4, 2, 5, 6).reshape(B, 2, 24, -1)
        t = s.embed(p) + s.pos + s.frame
        t = torch.cat([s.cls.expand(B, -1, -1), t.reshape(B, 48, -1)], 1)
        return s.head(s.enc(t)[:, 0])[:, 0]
torch.manual_seed(0); m = Plain()
opt = torch.optim.AdamW(m.parameters(), lr=4e-4, weight_decay=0.05)
pool = ClipPool((56, 196), 'cpu', seed=5, size=16, reuse=8, clip_frames=8)
t0 = time.time(); hist = []
for step in range(STEPS):
    rng = np.random.default_rng([step, 3]); B = 16
    img = pool.batch(rng, 1, B)['images'][:, 0]
    k = torch.from_numpy(rng.choice([-28, 28], size=B) if TASK == "sign" else rng.integers(-42, 43, size=B))
    f0 = img[:, :, :, 56:140]
    f1 = torch.stack([img[b, :, :, 56 + int(k[b]):140 + int(k[b])] for b in range(B)])
    for g in opt.param_groups: g['lr'] = 4e-4 * min(1, (step + 1) / 50)
    pred = m(torch.stack([f0, f1], 1)) * 50
    loss = (pred / 50 - k.float() / 50).abs().mean()
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    hist.append(((pred.detach() - k.float()).abs().mean().item(), k.float().abs().mean().item()))
    if step % 50 == 49:
        h = np.array(hist[-50:]).mean(0)
        print(f"step {step+1} t {time.time()-t0:.0f}s |err| px {h[0]:.2f} (predict-0 baseline {h[1]:.2f})", flush=True)
