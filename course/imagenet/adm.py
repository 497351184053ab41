"""ADM, the UNet of guided-diffusion (Dhariwal & Nichol, "Diffusion models beat GANs on image
synthesis", 2021), and its noise-aware classifier - written for this course from the paper and
the released configuration, verified number by number against the official networks' outputs.

* :class:`ADMUNet` - eps_theta(x_t, t, y): class-conditional, learned sigma (6 output channels:
  eps, then the variance interpolation values), scale-shift norm, ResBlock up/down, attention
  at 32, 16 and 8 pixels (the "new" q/k/v order).
* :class:`ADMClassifier` - the EncoderUNet: the same encoder and middle, then attention pooling
  to class logits; log p(y | x_t; t).
* :class:`ADMDenoiser` / :class:`ADMClassifierOnSigma` - the same networks on the course's
  sigma scale through the VP bridge (:mod:`course.conversions`).

Attention blocks are named like the official state dict (``input_blocks.5.1``, ``middle_block.1``,
``output_blocks.3.1``); identity attention makes a block's attention output its v.
"""
import math

import torch
from torch import nn

from .. import conversions as cv
from ..attention import PerturbableAttention, attention_weights


def timestep_embedding(t, dim, max_period=10000):
    """Sinusoidal embedding [N, dim]: cos(t f_i), sin(t f_i), f_i = max_period^(-i / (dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].to(torch.float32) * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm with 32 groups, computed in float32."""

    def __init__(self, channels):
        super().__init__(32, channels)

    def forward(self, x):
        return super().forward(x.float()).type(x.dtype)


def _updown(x, up, down):
    if up:
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    if down:
        return torch.nn.functional.avg_pool2d(x, kernel_size=2, stride=2)
    return x


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, timestep embedding as scale and shift of the second norm
    (h = norm(h) (1 + scale) + shift), SiLU-dropout-conv; optional 2x up/down inside; skip."""

    def __init__(self, channels, emb_channels, out_channels=None, use_scale_shift_norm=True, up=False, down=False, dropout=0.0):
        super().__init__()
        out_channels = out_channels or channels
        self.up, self.down, self.use_scale_shift_norm = up, down, use_scale_shift_norm
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels))
        self.out_layers = nn.Sequential(GroupNorm32(out_channels), nn.SiLU(), nn.Dropout(dropout),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x, emb):
        if self.up or self.down:  # resample between the first norm/activation and the first conv
            h = self.in_layers[:-1](x)
            h = _updown(h, self.up, self.down)
            x = _updown(x, self.up, self.down)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


def qkv_attention(qkv, heads, new_order, perturbation=None):
    """Multi-head attention on [B, 3 C, T]. new_order: q, k, v = three chunks of C channels, each
    split into heads; legacy: split into heads first, then q, k, v per head. Scale 1/sqrt(sqrt(c))
    on q and k each. Returns [B, C, T]."""
    B, width, T = qkv.shape
    c = width // (3 * heads)
    if new_order:
        q, k, v = (t.reshape(B * heads, c, T) for t in qkv.chunk(3, dim=1))
    else:
        q, k, v = qkv.reshape(B * heads, 3 * c, T).split(c, dim=1)
    scale = 1 / math.sqrt(math.sqrt(c))
    logits = torch.einsum("bct,bcs->bts", q * scale, k * scale)  # [B * heads, T, T]
    if perturbation is not None and perturbation.rows is not None:  # rows are per image; repeat per head
        perturbation = type(perturbation)(perturbation.mode, perturbation.rows.repeat_interleave(heads), perturbation.ratio, perturbation.generator)
    w = attention_weights(logits.float(), perturbation).type(logits.dtype)
    return torch.einsum("bts,bcs->bct", w, v).reshape(B, -1, T)


class AttentionBlock(PerturbableAttention):
    """x + proj_out(attention(qkv(norm(x)))) over the H W pixels."""

    def __init__(self, channels, num_head_channels=-1, num_heads=1, use_new_attention_order=False):
        super().__init__()
        self.heads = channels // num_head_channels if num_head_channels != -1 else num_heads
        self.new_order = use_new_attention_order
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x, emb=None):
        B, C, *spatial = x.shape
        x = x.reshape(B, C, -1)
        h = qkv_attention(self.qkv(self.norm(x)), self.heads, self.new_order, self.perturbation)
        return (x + self.proj_out(h)).reshape(B, C, *spatial)


class EmbedSequential(nn.Sequential):
    """A sequence of layers; those that take the timestep embedding get it."""

    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, (ResBlock, AttentionBlock)) else layer(x)
        return x


def _attention_ds(image_size, attention_resolutions):
    """"32,16,8" at image size 64 -> downsampling factors {2, 4, 8}."""
    if isinstance(attention_resolutions, str):
        attention_resolutions = [int(r) for r in attention_resolutions.split(",") if r]
    return {image_size // int(r) for r in attention_resolutions}


class _Encoder(nn.Module):
    """The input blocks and middle block shared by the UNet and the classifier."""

    def _build_encoder(self, image_size, in_channels, model_channels, num_res_blocks, attention_resolutions, channel_mult,
                       num_head_channels, num_heads, use_scale_shift_norm, resblock_updown, use_new_attention_order, dropout):
        emb = model_channels * 4
        self.torso_dtype = torch.float32  # float16 after convert_to_fp16()
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        attn_ds = _attention_ds(image_size, attention_resolutions)
        attn = dict(num_head_channels=num_head_channels, num_heads=num_heads, use_new_attention_order=use_new_attention_order)
        res = dict(use_scale_shift_norm=use_scale_shift_norm, dropout=dropout)
        ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        chans, ds = [ch], 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, emb, int(mult * model_channels), **res)]
                ch = int(mult * model_channels)
                if ds in attn_ds:
                    layers.append(AttentionBlock(ch, **attn))
                self.input_blocks.append(EmbedSequential(*layers))
                chans.append(ch)
            if level != len(channel_mult) - 1:
                if not resblock_updown:
                    raise NotImplementedError("only resblock_updown=True (the released 64x64 models) is implemented")
                self.input_blocks.append(EmbedSequential(ResBlock(ch, emb, ch, down=True, **res)))
                chans.append(ch)
                ds *= 2
        self.middle_block = EmbedSequential(ResBlock(ch, emb, **res), AttentionBlock(ch, **attn), ResBlock(ch, emb, **res))
        return ch, chans, ds, attn_ds, attn, res, emb

    def attention_blocks(self):
        """Names of the attention blocks (for PAG), in network order."""
        return [name for name, m in self.named_modules() if isinstance(m, AttentionBlock)]

    # guided-diffusion's --use_fp16 (fp16_util.convert_module_to_f16, UNetModel.convert_to_fp16):
    # the weights and biases of every convolution (Conv1d/2d/3d: also attention's qkv and proj_out)
    # in the torso become fp16; linear layers (timestep embedding, each ResBlock's emb_layers), the
    # label embedding, the norms and the output head stay fp32. The forward pass casts the input to
    # the torso's dtype and the torso's output back to the input's dtype before the head; the norms
    # compute in fp32 (GroupNorm32) and attention's softmax in fp32.
    _TORSO = ("input_blocks", "middle_block", "output_blocks")

    def fp16_plan(self):
        """Names of the modules that :meth:`convert_to_fp16` turns to fp16, in network order."""
        return [f"{part}.{name}" if name else part for part in self._TORSO if hasattr(self, part)
                for name, m in getattr(self, part).named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]

    def convert_to_fp16(self):
        """The torso's convolutions to fp16, as guided-diffusion's ``convert_to_fp16`` (run it on a
        GPU: fp16 convolutions on a CPU are slow or missing). Returns the model."""
        for name in self.fp16_plan():
            self.get_submodule(name).half()
        self.torso_dtype = torch.float16
        return self

    def convert_to_fp32(self):
        """Undo :meth:`convert_to_fp16`."""
        for name in self.fp16_plan():
            self.get_submodule(name).float()
        self.torso_dtype = torch.float32
        return self


class ADMUNet(_Encoder):
    """guided-diffusion's UNetModel (the flags of the released 64x64 model are the defaults but
    widths): forward(x_t [N, 3, H, W], t [N], y [N] or None) -> [N, 6 or 3, H, W]."""

    def __init__(self, image_size=64, in_channels=3, model_channels=192, out_channels=6, num_res_blocks=3,
                 attention_resolutions="32,16,8", dropout=0.0, channel_mult=(1, 2, 3, 4), num_classes=1000,
                 num_head_channels=64, num_heads=1, use_scale_shift_norm=True, resblock_updown=True,
                 use_new_attention_order=True, learn_sigma=True, use_fp16=False):
        super().__init__()
        self.config = dict(image_size=image_size, in_channels=in_channels, model_channels=model_channels, out_channels=out_channels,
                           num_res_blocks=num_res_blocks, attention_resolutions=attention_resolutions, dropout=dropout,
                           channel_mult=list(channel_mult), num_classes=num_classes, num_head_channels=num_head_channels,
                           num_heads=num_heads, use_scale_shift_norm=use_scale_shift_norm, resblock_updown=resblock_updown,
                           use_new_attention_order=use_new_attention_order, learn_sigma=learn_sigma)
        self.use_fp16 = use_fp16  # as in guided-diffusion, the flag alone changes nothing: convert_to_fp16() does
        self.model_channels, self.num_classes, self.image_size = model_channels, num_classes, image_size
        ch, chans, ds, attn_ds, attn, res, emb = self._build_encoder(
            image_size, in_channels, model_channels, num_res_blocks, attention_resolutions, channel_mult,
            num_head_channels, num_heads, use_scale_shift_norm, resblock_updown, use_new_attention_order, dropout)
        if num_classes:
            self.label_emb = nn.Embedding(num_classes, emb)
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + chans.pop(), emb, int(model_channels * mult), **res)]
                ch = int(model_channels * mult)
                if ds in attn_ds:
                    layers.append(AttentionBlock(ch, **attn))
                if level and i == num_res_blocks:
                    layers.append(ResBlock(ch, emb, ch, up=True, **res))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1))

    def forward(self, x, t, y=None):
        emb = self.time_embed(timestep_embedding(torch.as_tensor(t, device=x.device).expand(x.shape[0]), self.model_channels))
        if self.num_classes:
            if y is None:
                raise ValueError("this ADM model is class-conditional and has no null class: pass labels y [N]")
            emb = emb + self.label_emb(cv.as_labels(y).to(x.device).reshape(-1).expand(x.shape[0]))
        hs, h = [], x.type(self.torso_dtype)  # fp16 in the torso after convert_to_fp16 (emb stays fp32)
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h.type(x.dtype))


class AttentionPool2d(nn.Module):
    """CLIP-style attention pooling: the mean pixel, prepended as a query token, attends over all
    pixels (with a learned positional embedding); its output is projected to the classes."""

    def __init__(self, spatial, channels, num_head_channels, out_channels):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(channels, spatial**2 + 1) / channels**0.5)
        self.qkv_proj = nn.Conv1d(channels, 3 * channels, 1)
        self.c_proj = nn.Conv1d(channels, out_channels, 1)
        self.heads = channels // num_head_channels

    def forward(self, x):
        B, C = x.shape[:2]
        x = x.reshape(B, C, -1)
        x = torch.cat([x.mean(dim=-1, keepdim=True), x], dim=-1) + self.positional_embedding[None].to(x.dtype)
        x = self.c_proj(qkv_attention(self.qkv_proj(x), self.heads, new_order=True))
        return x[:, :, 0]


class ADMClassifier(_Encoder):
    """guided-diffusion's EncoderUNetModel with attention pooling: forward(x_t, t) -> logits [N, classes].
    Its inner attention blocks use the legacy q/k/v order (the released classifier's default)."""

    def __init__(self, image_size=64, in_channels=3, model_channels=128, out_channels=1000, num_res_blocks=4,
                 attention_resolutions="32,16,8", channel_mult=(1, 2, 3, 4), num_head_channels=64, num_heads=1,
                 use_scale_shift_norm=True, resblock_updown=True, use_new_attention_order=False, pool="attention",
                 dropout=0.0, use_fp16=False):
        super().__init__()
        if pool != "attention":
            raise NotImplementedError(f"pool={pool!r}: only attention pooling (the released classifiers) is implemented")
        self.config = dict(image_size=image_size, in_channels=in_channels, model_channels=model_channels, out_channels=out_channels,
                           num_res_blocks=num_res_blocks, attention_resolutions=attention_resolutions, channel_mult=list(channel_mult),
                           num_head_channels=num_head_channels, num_heads=num_heads, use_scale_shift_norm=use_scale_shift_norm,
                           resblock_updown=resblock_updown, use_new_attention_order=use_new_attention_order, pool=pool)
        self.use_fp16 = use_fp16  # as in guided-diffusion, the flag alone changes nothing: convert_to_fp16() does
        self.model_channels = model_channels
        ch, _, ds, *_ = self._build_encoder(image_size, in_channels, model_channels, num_res_blocks, attention_resolutions,
                                             channel_mult, num_head_channels, num_heads, use_scale_shift_norm, resblock_updown,
                                             use_new_attention_order, dropout)
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), AttentionPool2d(image_size // ds, ch, num_head_channels, out_channels))

    def forward(self, x, t):
        emb = self.time_embed(timestep_embedding(torch.as_tensor(t, device=x.device).expand(x.shape[0]), self.model_channels))
        h = x.type(self.torso_dtype)
        for block in self.input_blocks:
            h = block(h, emb)
        return self.out(self.middle_block(h, emb).type(x.dtype))


class ADMDenoiser(cv.EpsDenoiser):
    """An ADM eps-model as a course denoiser D(x, sigma, y) through the VP bridge
    (:class:`course.conversions.EpsDenoiser`) with the model's own schedule (cosine for the 64x64
    model): x_t = sqrt(abar) x, abar = 1/(1 + sigma^2), t the (continuous) timestep with that abar,
    D = x - sigma eps(x_t, t, y), eps = the first 3 of the 6 output channels.

    The model has no null class: y = None raises; for CFG-like guidance use independent condition
    guidance (a random label as the "unconditional" branch; Sadat et al. 2025, https://arxiv.org/abs/2407.02687)."""

    def __init__(self, unet: ADMUNet, betas=None):
        super().__init__(lambda x_t, t, y: self.unet(x_t, t, y)[:, :3],
                         cv.alphas_cumprod(cv.cosine_betas(1000) if betas is None else betas))
        self.unet = unet

    def attention_blocks(self):
        return ["unet." + n for n in self.unet.attention_blocks()]


class ADMClassifierOnSigma(nn.Module):
    """The ADM classifier on the course's scale: log p(y | x; sigma) for VE inputs x (classifier
    guidance takes its gradient with respect to x)."""

    def __init__(self, classifier: ADMClassifier, betas=None):
        super().__init__()
        self.classifier = classifier
        self.register_buffer("abar", cv.alphas_cumprod(cv.cosine_betas(1000) if betas is None else betas), persistent=False)

    def forward(self, x, sigma, y):
        x_t, t = cv.vp_input(x, sigma, self.abar)
        logp = torch.log_softmax(self.classifier(x_t, t), dim=-1)
        y = cv.as_labels(y).to(x.device).reshape(-1, 1).expand(x.shape[0], 1)
        return logp.gather(1, y).squeeze(1)
