import sys, time, torch, numpy as np
torch.set_num_threads(1)
from httm_ros.vggt import VGGT, VGGTConfig
from httm_ros.train.loop import forward_train, make_optimizer, TrainOptions
from httm_ros.train.data import ClipPool
from httm_ros.train.losses import training_loss, rotation_error_deg
name, pw, lr = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
extra = eval(sys.argv[4]) if len(sys.argv) > 4 else {}
import os; SMAX = int(os.environ.get("SMAX", 4)); hw = (56, 84)
cfg = VGGTConfig.preset('synth', img_size=84, **extra)
torch.manual_seed(0)
m = VGGT(cfg).train()
opt = make_optimizer(m, TrainOptions(lr=lr))
pool = ClipPool(hw, 'cpu', seed=5, size=16, reuse=4, clip_frames=16)
t0 = time.time(); hist = []
for step in range(100000):
    if time.time() - t0 > float(sys.argv[5] if len(sys.argv) > 5 else 480): break
    rng = np.random.default_rng([step, 3])
    S = int(rng.integers(2, SMAX + 1)); B = 32 // S
    gt = pool.batch(rng, S, B)
    for g in opt.param_groups: g['lr'] = lr * min(1, (step + 1) / 50)
    out = forward_train(m, gt['images'], point_head=pw > 0)
    parts = training_loss(out, gt, 5.0, 1.0, pw)
    opt.zero_grad(); parts['loss'].backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    ident = gt['pose_enc'].clone(); ident[..., :7] = 0; ident[..., 6] = 1
    hist.append((float(rotation_error_deg(out['pose_history'][-1].detach(), gt['pose_enc'])), float(rotation_error_deg(ident, gt['pose_enc'])), float(parts['cam_q']), float(parts['depth_reg'])))
    if step % 50 == 49:
        h = np.array(hist[-50:]).mean(0)
        print(f"{name} step {step+1} t {time.time()-t0:.0f}s rot {h[0]:.2f} ident {h[1]:.2f} cam_q {h[2]:.4f} depth_reg {h[3]:.3f}", flush=True)
