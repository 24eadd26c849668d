# Can the synth VGGT learn a 2-frame image shift (a cross-frame quantity) from its camera loss?
import sys, time, torch, numpy as np
torch.set_num_threads(1)
from httm_ros.vggt import VGGT, VGGTConfig
from httm_ros.train.loop import forward_train, make_optimizer, TrainOptions
from httm_ros.train.data import ClipPool
from httm_ros.train.losses import camera_loss
hw = (56, 84)
cfg = VGGTConfig.preset('synth', img_size=84, **eval(sys.argv[1]))
torch.manual_seed(0)
m = VGGT(cfg).train()
import os, sys as _s; _s.path.insert(0, "/tmp/diag"); import sincos; sincos.apply(m, float(os.environ.get("PESCALE", 1)))
opt = make_optimizer(m, TrainOptions(lr=float(sys.argv[2])))
pool = ClipPool((56, 196), 'cpu', seed=5, size=16, reuse=8, clip_frames=8)
t0 = time.time(); hist = []
for step in range(3000):
    if time.time() - t0 > float(sys.argv[3]): break
    rng = np.random.default_rng([step, 3])
    B = 16
    gt = pool.batch(rng, 1, B)
    img = gt['images'][:, 0]                                    # [B,3,56,112]
    k = torch.from_numpy(rng.integers(-42, 43, size=B))
    f0 = img[:, :, :, 56:140]
    f1 = torch.stack([img[b, :, :, 56 + int(k[b]):140 + int(k[b])] for b in range(B)])
    x = torch.stack([f0, f1], 1)
    tgt = torch.zeros(B, 2, 9); tgt[:, :, 6] = 1; tgt[:, 1, 4] = k.float() / 50; tgt[:, :, 7:] = 1
    for g in opt.param_groups: g['lr'] = float(sys.argv[2]) * min(1, (step + 1) / 50)
    out = forward_train(m, x)
    l = camera_loss(out['pose_history'], tgt)
    opt.zero_grad(); l['total'].backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    pred = out['pose_history'][-1][:, 1, 4].detach() * 50
    hist.append(((pred - k.float()).abs().mean().item(), k.float().abs().mean().item()))
    if step % 50 == 49:
        h = np.array(hist[-50:]).mean(0)
        print(f"step {step+1} t {time.time()-t0:.0f}s |err| px {h[0]:.2f} (predict-0 baseline {h[1]:.2f})", flush=True)
