"""A DiT written from the published architecture facts (docs/MODEL_CONTRACT.md), shaped so
that TorchScript exposes the branch methods the C++ block loop drives.

The parameter names differ from the official checkpoint in two places only, because a
TorchScript method cannot share its name with a submodule: `blocks.{i}.attn.*` is stored as
`blocks.{i}.attention.*` and `blocks.{i}.mlp.*` as `blocks.{i}.ffn.*` (see `official_to_module`).

One network, three families (contract version 2): DiT predicts the noise eps at the DDPM
timestep t in 0..999; SiT predicts the velocity v = x1 - x0 at t in [0, 1] (t = 0 noise, t = 1
data); REPA's network is SiT's with the other time direction and sign (it predicts eps - x at
t = 1 noise), so its module maps t -> 1 - t before the timestep embedding and negates the output
of `final`, presenting SiT's convention while the blocks (and so every cached branch output)
stay REPA's own.
"""
import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CONTRACT_VERSION = 2
# family -> the prediction its network makes (the contract's `prediction` attribute)
FAMILIES = {"dit": "eps", "sit": "velocity", "repa": "velocity"}


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def linear(x: Tensor, weight: Tensor, bias: Tensor, batch_invariant: bool) -> Tensor:
    """F.linear, or with `batch_invariant` one product per batch row: one big GEMM rounds a row
    differently depending on how many rows share the call, while per-row products of one shape
    give every image the same bits in any batch. (B, T, D) inputs use torch.baddbmm over an
    expanded weight (one GEMM per image, bias fused); (B, D) inputs (the adaLN modulations and
    the timestep MLP, run at every step even when the cache reuses the blocks) use one
    matrix-vector product per row, as a (1, D) GEMM would repack the whole weight per row."""
    if not batch_invariant:
        return F.linear(x, weight, bias)
    if x.dim() == 2:
        out = torch.empty(x.shape[0], weight.shape[0], dtype=x.dtype, device=x.device)
        for i in range(x.shape[0]):
            torch.addmv(bias, weight, x[i], out=out[i])
        return out
    w = weight.t().unsqueeze(0).expand(x.shape[0], weight.shape[1], weight.shape[0])
    return torch.baddbmm(bias, x, w)


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.batch_invariant = False
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        head_dim = d // self.heads
        qkv = linear(x, self.qkv.weight, self.qkv.bias, self.batch_invariant).reshape(b, n, 3, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        weights = torch.softmax((q * (head_dim ** -0.5)) @ k.transpose(-2, -1), dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(b, n, d)
        return linear(out, self.proj.weight, self.proj.bias, self.batch_invariant)


class FusedSelfAttention(SelfAttention):
    """The same attention through F.scaled_dot_product_attention (PyTorch >= 2.0 at export time):
    one fused kernel on GPUs. Same parameters, same math up to rounding."""

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        head_dim = d // self.heads
        qkv = linear(x, self.qkv.weight, self.qkv.bias, self.batch_invariant).reshape(
            b, n, 3, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        out = out.transpose(1, 2).reshape(b, n, d)
        return linear(out, self.proj.weight, self.proj.bias, self.batch_invariant)


HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


class FeedForward(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.batch_invariant = False
        self.fc1 = nn.Linear(hidden, 4 * hidden)
        self.fc2 = nn.Linear(4 * hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        h = F.gelu(linear(x, self.fc1.weight, self.fc1.bias, self.batch_invariant), approximate="tanh")
        return linear(h, self.fc2.weight, self.fc2.bias, self.batch_invariant)


class Block(nn.Module):
    def __init__(self, hidden: int, heads: int, fused_attention: bool = False):
        super().__init__()
        self.hidden = hidden
        self.batch_invariant = False
        self.attention = FusedSelfAttention(hidden, heads) if fused_attention else SelfAttention(hidden, heads)
        self.ffn = FeedForward(hidden)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    @torch.jit.export
    def modulation(self, c: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp), each (B, D)."""
        ada = self.adaLN_modulation[1]
        m = linear(F.silu(c), ada.weight, ada.bias, self.batch_invariant).chunk(6, dim=1)
        return m[0], m[1], m[2], m[3], m[4], m[5]

    @torch.jit.export
    def attn(self, x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
        """Un-gated attention branch, (B, T, D)."""
        h = F.layer_norm(x, [self.hidden], eps=1e-6)
        return self.attention(modulate(h, shift, scale))

    @torch.jit.export
    def mlp(self, x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
        """Un-gated MLP branch, (B, T, D)."""
        h = F.layer_norm(x, [self.hidden], eps=1e-6)
        return self.ffn(modulate(h, shift, scale))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        s1, c1, g1, s2, c2, g2 = self.modulation(c)
        x = x + g1.unsqueeze(1) * self.attn(x, s1, c1)
        return x + g2.unsqueeze(1) * self.mlp(x, s2, c2)


class PatchEmbed(nn.Module):
    def __init__(self, channels: int, hidden: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, hidden, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbed(nn.Module):
    def __init__(self, hidden: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.batch_invariant = False
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: Tensor) -> Tensor:
        half = self.freq_dim // 2
        k = torch.arange(0, half, dtype=torch.float32, device=t.device)
        freqs = torch.exp(-math.log(10000.0) * k / half)
        args = t.unsqueeze(1).float() * freqs.unsqueeze(0)
        sinusoid = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        first, second = self.mlp[0], self.mlp[2]
        h = linear(sinusoid.to(first.weight.dtype), first.weight, first.bias, self.batch_invariant)
        return linear(F.silu(h), second.weight, second.bias, self.batch_invariant)


class LabelEmbed(nn.Module):
    def __init__(self, num_classes: int, hidden: int):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, hidden)

    def forward(self, y: Tensor) -> Tensor:
        return self.embedding_table(y)


class FinalLayer(nn.Module):
    def __init__(self, hidden: int, patch: int, out_channels: int):
        super().__init__()
        self.hidden = hidden
        self.batch_invariant = False
        self.linear = nn.Linear(hidden, patch * patch * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        ada = self.adaLN_modulation[1]
        shift, scale = linear(F.silu(c), ada.weight, ada.bias, self.batch_invariant).chunk(2, dim=1)
        h = modulate(F.layer_norm(x, [self.hidden], eps=1e-6), shift, scale)
        return linear(h, self.linear.weight, self.linear.bias, self.batch_invariant)


class DiT(nn.Module):
    """`family` (dit, sit, repa) sets `prediction` and REPA's conversion; `contract_version` 1
    writes the version-1 module (DiT only: int64 timesteps, no `prediction` / `model_family`
    attributes), kept so that tests can check that version-1 files still load."""

    # REPA: embed feeds 1 - t to the timestep embedding and final negates (a constant compiled
    # into the code; the contract's `model_family` attribute says "repa").
    reverse_time: torch.jit.Final[bool]

    def __init__(self, input_size: int, patch_size: int, in_channels: int, hidden_size: int,
                 depth: int, num_heads: int, num_classes: int, learn_sigma: bool,
                 model_name: str = "custom", fused_attention: bool = False, family: str = "dit",
                 contract_version: int = CONTRACT_VERSION):
        super().__init__()
        if family not in FAMILIES:
            raise ValueError(f"unknown model family '{family}' ({', '.join(FAMILIES)})")
        if contract_version not in (1, 2):
            raise ValueError(f"unknown contract version {contract_version} (1 or 2)")
        if contract_version == 1 and family != "dit":
            raise ValueError(f"contract version 1 has no velocity models (family '{family}' "
                             "needs version 2)")
        self.input_size = input_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.hidden_size = hidden_size
        self.depth = depth
        self.num_heads = num_heads
        self.num_classes = num_classes
        self.learn_sigma = learn_sigma
        self.contract_version = contract_version
        self.model_name = model_name
        if contract_version >= 2:
            self.prediction = FAMILIES[family]
            self.model_family = family
        self.reverse_time = family == "repa"
        tokens = (input_size // patch_size) ** 2
        self.x_embedder = PatchEmbed(in_channels, hidden_size, patch_size)
        self.t_embedder = TimestepEmbed(hidden_size)
        self.y_embedder = LabelEmbed(num_classes, hidden_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList([Block(hidden_size, num_heads, fused_attention) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)

    @torch.jit.export
    def embed(self, x: Tensor, t: Tensor, y: Tensor) -> Tuple[Tensor, Tensor]:
        """x (B, C, H, W); t (B,) the time in the model's units (eps: the original DDPM
        timestep 0..999, float32 or int64; velocity: float32 SiT time in [0, 1], 0 = noise);
        y (B,) int64 labels (num_classes = null). Returns tokens (B, T, D) and conditioning
        c (B, D)."""
        if self.reverse_time:
            t = 1.0 - t
        tokens = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y)
        return tokens, c

    @torch.jit.export
    def final(self, tokens: Tensor, c: Tensor) -> Tensor:
        """Final adaLN layer and unpatchify: (B, T, D) -> (B, out_channels, H, W) (negated for
        REPA, so that the output is SiT's velocity)."""
        out = self.final_layer(tokens, c)
        b = out.shape[0]
        p = self.patch_size
        h = self.input_size // p
        out = out.reshape(b, h, h, p, p, self.out_channels).permute(0, 5, 1, 3, 2, 4)
        out = out.reshape(b, self.out_channels, h * p, h * p)
        if self.reverse_time:
            out = -out
        return out

    def forward(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        tokens, c = self.embed(x, t, y)
        for block in self.blocks:
            tokens = block(tokens, c)
        return self.final(tokens, c)


def official_to_module(key: str) -> str:
    """Maps an official DiT state-dict key to this module's parameter name."""
    parts = key.split(".")
    if len(parts) > 2 and parts[0] == "blocks":
        if parts[2] == "attn":
            parts[2] = "attention"
        elif parts[2] == "mlp":
            parts[2] = "ffn"
    return ".".join(parts)


def module_to_official(key: str) -> str:
    parts = key.split(".")
    if len(parts) > 2 and parts[0] == "blocks":
        if parts[2] == "attention":
            parts[2] = "attn"
        elif parts[2] == "ffn":
            parts[2] = "mlp"
    return ".".join(parts)
