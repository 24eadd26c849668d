import torch, math
def sincos_2d(side, dim):
    """MAE-style fixed 2D sin-cos table [side*side, dim]: half the channels for rows, half for cols."""
    ys, xs = torch.meshgrid(torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32), indexing='ij')
    q = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(q, dtype=torch.float32) / q)
    def enc(p):
        a = p.reshape(-1, 1) * omega[None]
        return torch.cat((a.sin(), a.cos()), 1)
    return torch.cat((enc(ys), enc(xs)), 1)
def apply(m, scale=1.0):
    pe = m.aggregator.patch_embed.pos_embed
    side = int(round((pe.shape[1] - 1) ** 0.5))
    with torch.no_grad():
        pe[0, 1:] = scale * sincos_2d(side, pe.shape[2])
