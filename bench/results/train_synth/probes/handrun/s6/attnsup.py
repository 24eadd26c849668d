# Plain ViT with attention supervision: head 0 of block SUPL learns to attend from frame-1 patches to
# their true frame-0 match. Does the shift become learnable?
import sys, time, os, math, torch, numpy as np, torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(1)
sys.path.insert(0, "/work/main")
from httm_ros.train.data import ClipPool
from bench.train_probes import shift_matches
TASK = os.environ.get("TASK", "sign"); STEPS = int(os.environ.get("STEPS", 1500)); AW = float(os.environ.get("AW", 1)); SUPL = int(os.environ.get("SUPL", 1))
class Block(nn.Module):
    def __init__(s, d, h):
        super().__init__(); s.h = h; s.n1 = nn.LayerNorm(d); s.qkv = nn.Linear(d, 3 * d); s.proj = nn.Linear(d, d)
        s.n2 = nn.LayerNorm(d); s.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
    def forward(s, x):
        B, N, D = x.shape
        q, k, v = s.qkv(s.n1(x)).reshape(B, N, 3, s.h, D // s.h).permute(2, 0, 3, 1, 4)
        logits = q @ k.transpose(-1, -2) / math.sqrt(D // s.h)
        x = x + s.proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(B, N, D))
        return x + s.mlp(s.n2(x)), logits
class Plain(nn.Module):
    def __init__(s, d=128, depth=6, heads=4):
        super().__init__()
        s.embed = nn.Linear(3 * 14 * 14, d); s.pos = nn.Parameter(torch.randn(1, 1, 24, d) * .02)
        s.frame = nn.Parameter(torch.randn(1, 2, 1, d) * .02); s.cls = nn.Parameter(torch.randn(1, 1, d) * .02)
        s.blocks = nn.ModuleList([Block(d, heads) for _ in range(depth)]); s.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 1))
    def forward(s, x):
        B = x.shape[0]
        p = x.unfold(3, 14, 14).unfold(4, 14, 14).permute(0, 1, 3, 4, 2, 5, 6).reshape(B, 2, 24, -1)
        t = torch.cat([s.cls.expand(B, -1, -1), (s.embed(p) + s.pos + s.frame).reshape(B, 48, -1)], 1)
        logs = []
        for b in s.blocks:
            t, l = b(t); logs.append(l)
        return s.head(t[:, 0])[:, 0], logs
torch.manual_seed(0); m = Plain()
opt = torch.optim.AdamW(m.parameters(), lr=4e-4, weight_decay=0.05)
pool = ClipPool((56, 196), 'cpu', seed=5, size=16, reuse=8, clip_frames=8)
t0 = time.time(); hist = []
for step in range(STEPS):
    rng = np.random.default_rng([step, 3]); B = 16
    img = pool.batch(rng, 1, B)['images'][:, 0]
    kk = rng.choice([-28, 28], size=B) if TASK == "sign" else rng.integers(-42, 43, size=B)
    k = torch.from_numpy(kk)
    f0 = img[:, :, :, 56:140]
    f1 = torch.stack([img[b, :, :, 56 + int(k[b]):140 + int(k[b])] for b in range(B)])
    for g in opt.param_groups: g['lr'] = 4e-4 * min(1, (step + 1) / 50)
    pred, logs = m(torch.stack([f0, f1], 1)); pred = pred * 50
    loss = (pred / 50 - k.float() / 50).abs().mean()
    tgt = shift_matches(kk)[:, 1]                                    # [B,24] frame-0 patch or -1
    lg = logs[SUPL][:, 0, 1 + 24:, 1:1 + 24]                          # head 0: frame-1 queries x frame-0 keys
    ce = F.cross_entropy(lg.reshape(-1, 24), tgt.reshape(-1), ignore_index=-1)
    if AW > 0: loss = loss + AW * ce
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    hist.append(((pred.detach() - k.float()).abs().mean().item(), k.float().abs().mean().item(), ce.item()))
    if step % 50 == 49:
        h = np.array(hist[-50:]).mean(0)
        print(f"step {step+1} t {time.time()-t0:.0f}s |err| px {h[0]:.2f} (predict-0 baseline {h[1]:.2f}) attn-ce {h[2]:.2f}", flush=True)
