"""The Triton kernels of the kernel tier: a layer (matmul + bias + activation) and the decoder's last layer fused
with the likelihood, so that the N*K*D likelihood parameters never reach global memory; and, where the widths
allow, the whole decoder in one kernel, from the reparameterisation to the likelihood.

    linear:      y = activation(x @ W + b)                           x (M, I), W (I, O) -> y (M, O)
    likelihood:  out_s = sum_d term(x_{s // K, d}, tail(h_s @ W + b)_d)   h (M, H), x (N, D) -> out (M,) float32
                 Bernoulli term = x l - softplus(l); Gaussian term = logvar + (x - mean)^2 exp(-logvar)
    decoder:     z_s = mu_{s // K} + std_{s // K} eps_{s % K} -> h1 = act(z W1 + b1) -> [h2 = act(h1 W2 + b2)]
                 -> likelihood, in one program per BM samples: z, h1 and h2 never leave the chip

Matmul operands are in the tier's precision (fp16, bf16 or fp32), accumulated in float32; the first decoder
layer reads z in float32. A tail (engine.kernels.pattern: up to three elementwise steps, such as training/'s
soft-clamped log-variance floor + softplus(raw - floor)) is applied to each head's values on chip.

The one-kernel decoder holds h1 (BM, H1) in registers whole and makes h2 a block of BJ columns at a time, each
block read once per column tile of the output: it is taken when the decoder has one or two hidden layers, every
hidden layer is at most FUSED_MAX_WIDTH wide and the output fits one tile (D <= FUSED_MAX_OUTPUT), so that no
block of h2 is computed twice. Wider decoders (mnist-binary's 500-500-784) go layer by layer, h1 and h2 through
memory. The limits are set from shared/gpu/README.md's register and shared-memory arithmetic, not yet measured.

Importing this module imports torch and triton: engine.kernels.tier does it lazily, after setting
TRITON_INTERPRET when it runs the kernels on the CPU (tests), since triton reads that variable when a kernel is
defined.
"""

import os

import torch
import triton
import triton.language as tl

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"  # as it was when these kernels were defined
ACTIVATION_CODES = {"identity": 0, "relu": 1, "leaky_relu": 2, "tanh": 3, "sigmoid": 4, "softplus": 5, "elu": 6}
# The tails' steps (engine.kernels.pattern.STEPS) by the same codes: each step is (code, its number)
STEP_CODES = {**ACTIVATION_CODES, "add": 7, "mul": 8, "max": 9, "min": 10, "softplus_above": 11}
TAIL_SLOTS = 3  # engine.kernels.pattern.MAX_TAIL
FUSED_MAX_WIDTH, FUSED_MAX_OUTPUT = 256, 128
# (rows, columns, reduction) per program. The interpreter runs one program at a time in NumPy: fewer, larger
# programs run faster there. The GPU sizes follow shared/gpu/README.md's 128-column tiles.
GPU_BLOCKS, INTERPRETER_BLOCKS = (128, 128, 64), (256, 256, 128)


@triton.jit
def _activate(v, CODE: tl.constexpr, alpha):
    if CODE == 1:
        v = tl.maximum(v, 0.0)
    elif CODE == 2:
        v = tl.where(v > 0, v, alpha * v)
    elif CODE == 3:
        v = 1.0 - 2.0 / (tl.exp(2.0 * v) + 1.0)  # tanh, saturating to +-1 without inf / inf
    elif CODE == 4:
        v = 1.0 / (1.0 + tl.exp(-v))
    elif CODE == 5:
        v = _softplus(v)
    elif CODE == 6:
        v = tl.where(v > 0, v, tl.exp(tl.minimum(v, 0.0)) - 1.0)
    elif CODE == 7:
        v = v + alpha
    elif CODE == 8:
        v = v * alpha
    elif CODE == 9:
        v = tl.maximum(v, alpha)
    elif CODE == 10:
        v = tl.minimum(v, alpha)
    elif CODE == 11:
        v = tl.where(v > alpha, v, _softplus(v))  # torch's softplus: the value itself past the threshold
    return v


@triton.jit
def _tail(v, S1: tl.constexpr, A1, S2: tl.constexpr, A2, S3: tl.constexpr, A3):
    """Up to three steps, code 0 (identity) in the slots left over."""
    return _activate(_activate(_activate(v, S1, A1), S2, A2), S3, A3)


@triton.jit
def _likelihood_term(x, first, logvar, GAUSSIAN: tl.constexpr):
    """Per element: x l - softplus(l) (Bernoulli, first = logits), or logvar + (x - mean)^2 exp(-logvar)."""
    if GAUSSIAN:
        residual = x - first
        term = logvar + residual * residual * tl.exp(-logvar)
    else:
        term = x * first - _softplus(first)
    return term


@triton.jit
def _softplus(v):
    return tl.maximum(v, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(v)))  # log(1 + e^v) without overflow


@triton.jit
def _dot(a, b, acc, UPCAST: tl.constexpr, IEEE: tl.constexpr):
    """acc + a @ b in float32. UPCAST: the interpreter multiplies bf16 wrongly (Triton 3.9), so it gets the
    operands widened: the products of bf16 values are exact in float32 either way. IEEE: true float32 products
    (the GPU would otherwise use TF32 for float32 operands)."""
    if UPCAST:
        a, b = a.to(tl.float32), b.to(tl.float32)
    if IEEE:
        return tl.dot(a, b, acc, input_precision="ieee")
    return tl.dot(a, b, acc)


@triton.jit
def linear_kernel(x_ptr, w_ptr, b_ptr, y_ptr, M, O, I, alpha, ACT: tl.constexpr, BM: tl.constexpr,
                  BN: tl.constexpr, BK: tl.constexpr, UPCAST: tl.constexpr, IEEE: tl.constexpr):
    rows = tl.program_id(0) * BM + tl.arange(0, BM)  # (BM,)
    cols = tl.program_id(1) * BN + tl.arange(0, BN)  # (BN,)
    acc = tl.zeros((BM, BN), tl.float32)
    for k0 in range(0, I, BK):
        ks = k0 + tl.arange(0, BK)  # (BK,)
        a = tl.load(x_ptr + rows[:, None] * I + ks[None, :], mask=(rows[:, None] < M) & (ks[None, :] < I), other=0.0)
        b = tl.load(w_ptr + ks[:, None] * O + cols[None, :], mask=(ks[:, None] < I) & (cols[None, :] < O), other=0.0)
        acc = _dot(a, b, acc, UPCAST, IEEE)  # (BM, BN)
    acc += tl.load(b_ptr + cols, mask=cols < O, other=0.0)[None, :]
    acc = _activate(acc, ACT, alpha)
    tl.store(y_ptr + rows[:, None] * O + cols[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=(rows[:, None] < M) & (cols[None, :] < O))


@triton.jit
def likelihood_kernel(h_ptr, w_ptr, b_ptr, w2_ptr, b2_ptr, x_ptr, out_ptr, M, D, H, SAMPLES,
                      P1: tl.constexpr, PA1, P2: tl.constexpr, PA2, P3: tl.constexpr, PA3,
                      Q1: tl.constexpr, QA1, Q2: tl.constexpr, QA2, Q3: tl.constexpr, QA3,
                      GAUSSIAN: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                      UPCAST: tl.constexpr, IEEE: tl.constexpr):
    """One program: BM samples, all D columns in tiles of BN; W (H, D) gives the logits or the mean, W2 (H, D)
    the log-variance (Gaussian only); P and Q: the tails of the first and the second head."""
    rows = tl.program_id(0) * BM + tl.arange(0, BM)  # (BM,) sample s of point s // SAMPLES
    points = rows // SAMPLES
    total = tl.zeros((BM,), tl.float32)
    for n0 in range(0, D, BN):
        cols = n0 + tl.arange(0, BN)  # (BN,)
        acc = tl.zeros((BM, BN), tl.float32)
        acc2 = tl.zeros((BM, BN), tl.float32)
        for k0 in range(0, H, BK):
            ks = k0 + tl.arange(0, BK)
            a = tl.load(h_ptr + rows[:, None] * H + ks[None, :], mask=(rows[:, None] < M) & (ks[None, :] < H),
                        other=0.0)  # (BM, BK)
            w_mask = (ks[:, None] < H) & (cols[None, :] < D)
            acc = _dot(a, tl.load(w_ptr + ks[:, None] * D + cols[None, :], mask=w_mask, other=0.0), acc, UPCAST, IEEE)
            if GAUSSIAN:
                acc2 = _dot(a, tl.load(w2_ptr + ks[:, None] * D + cols[None, :], mask=w_mask, other=0.0), acc2,
                            UPCAST, IEEE)
        inside = (rows[:, None] < M) & (cols[None, :] < D)  # (BM, BN)
        x = tl.load(x_ptr + points[:, None] * D + cols[None, :], mask=inside, other=0.0)  # (BM, BN) float32
        first = _tail(acc + tl.load(b_ptr + cols, mask=cols < D, other=0.0)[None, :], P1, PA1, P2, PA2, P3, PA3)
        logvar = _tail(acc2 + tl.load(b2_ptr + cols, mask=cols < D, other=0.0)[None, :], Q1, QA1, Q2, QA2, Q3, QA3)
        term = _likelihood_term(x, first, logvar, GAUSSIAN)
        total += tl.sum(tl.where(inside, term, 0.0), axis=1)
    tl.store(out_ptr + rows, total, mask=rows < M)


@triton.jit
def decoder_kernel(mu_ptr, std_ptr, eps_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, w_ptr, b_ptr, wv_ptr, bv_ptr, x_ptr,
                   out_ptr, M, L, H1, H2, D, SAMPLES, alpha1, alpha2,
                   P1: tl.constexpr, PA1, P2: tl.constexpr, PA2, P3: tl.constexpr, PA3,
                   Q1: tl.constexpr, QA1, Q2: tl.constexpr, QA2, Q3: tl.constexpr, QA3,
                   ACT1: tl.constexpr, ACT2: tl.constexpr, TWO: tl.constexpr, GAUSSIAN: tl.constexpr,
                   BM: tl.constexpr, LP: tl.constexpr, H1P: tl.constexpr, BJ: tl.constexpr, DP: tl.constexpr,
                   UPCAST: tl.constexpr, IEEE_HIDDEN: tl.constexpr, IEEE: tl.constexpr):
    """One program: BM samples s (point s // SAMPLES, noise row s % SAMPLES). mu, std (N, L) and eps (K, L)
    float32; W1 (L, H1) float32; W2 (H1, H2), W and WV (H, D) in the tier's precision, H the last hidden width
    (H2 when TWO, else H1). h1 (BM, H1P) stays whole in registers; h2 is made BJ columns at a time and consumed
    by the heads at once; the D <= DP outputs are one tile. IEEE_HIDDEN, IEEE: W2's, the heads' operands are
    float32 (true float32 products, not TF32)."""
    rows = tl.program_id(0) * BM + tl.arange(0, BM)  # (BM,)
    points, draws = rows // SAMPLES, rows % SAMPLES
    live = rows < M
    latents = tl.arange(0, LP)  # (LP,)
    z_mask = live[:, None] & (latents[None, :] < L)
    mu = tl.load(mu_ptr + points[:, None] * L + latents[None, :], mask=z_mask, other=0.0)
    std = tl.load(std_ptr + points[:, None] * L + latents[None, :], mask=z_mask, other=0.0)
    eps = tl.load(eps_ptr + draws[:, None] * L + latents[None, :], mask=z_mask, other=0.0)
    z = mu + std * eps  # (BM, LP) float32: the reparameterisation, on chip
    units = tl.arange(0, H1P)  # (H1P,)
    w1 = tl.load(w1_ptr + latents[:, None] * H1 + units[None, :],
                 mask=(latents[:, None] < L) & (units[None, :] < H1), other=0.0)  # (LP, H1P) float32
    h1 = tl.dot(z, w1, tl.zeros((BM, H1P), tl.float32), input_precision="ieee")
    h1 = _activate(h1 + tl.load(b1_ptr + units, mask=units < H1, other=0.0)[None, :], ACT1, alpha1)
    h1 = tl.where(units[None, :] < H1, h1, 0.0).to(w2_ptr.dtype.element_ty)  # (BM, H1P), the tier's precision
    cols = tl.arange(0, DP)  # (DP,)
    acc = tl.zeros((BM, DP), tl.float32)
    acc2 = tl.zeros((BM, DP), tl.float32)
    if TWO:
        for j0 in range(0, H2, BJ):
            js = j0 + tl.arange(0, BJ)  # (BJ,) the columns of h2 made here
            w2 = tl.load(w2_ptr + units[:, None] * H2 + js[None, :], mask=(units[:, None] < H1) & (js[None, :] < H2),
                         other=0.0)  # (H1P, BJ)
            h2 = _dot(h1, w2, tl.zeros((BM, BJ), tl.float32), UPCAST, IEEE_HIDDEN)
            h2 = _activate(h2 + tl.load(b2_ptr + js, mask=js < H2, other=0.0)[None, :], ACT2, alpha2)
            h2 = tl.where(js[None, :] < H2, h2, 0.0).to(w_ptr.dtype.element_ty)  # (BM, BJ)
            w_mask = (js[:, None] < H2) & (cols[None, :] < D)
            acc = _dot(h2, tl.load(w_ptr + js[:, None] * D + cols[None, :], mask=w_mask, other=0.0), acc, UPCAST,
                       IEEE)
            if GAUSSIAN:
                acc2 = _dot(h2, tl.load(wv_ptr + js[:, None] * D + cols[None, :], mask=w_mask, other=0.0), acc2,
                            UPCAST, IEEE)
    else:
        w_mask = (units[:, None] < H1) & (cols[None, :] < D)
        acc = _dot(h1, tl.load(w_ptr + units[:, None] * D + cols[None, :], mask=w_mask, other=0.0), acc, UPCAST, IEEE)
        if GAUSSIAN:
            acc2 = _dot(h1, tl.load(wv_ptr + units[:, None] * D + cols[None, :], mask=w_mask, other=0.0), acc2,
                        UPCAST, IEEE)
    inside = live[:, None] & (cols[None, :] < D)  # (BM, DP)
    x = tl.load(x_ptr + points[:, None] * D + cols[None, :], mask=inside, other=0.0)
    first = _tail(acc + tl.load(b_ptr + cols, mask=cols < D, other=0.0)[None, :], P1, PA1, P2, PA2, P3, PA3)
    logvar = _tail(acc2 + tl.load(bv_ptr + cols, mask=cols < D, other=0.0)[None, :], Q1, QA1, Q2, QA2, Q3, QA3)
    term = _likelihood_term(x, first, logvar, GAUSSIAN)
    tl.store(out_ptr + rows, tl.sum(tl.where(inside, term, 0.0), axis=1), mask=live)


def blocks() -> tuple[int, int, int]:
    return INTERPRETER_BLOCKS if INTERPRETED else GPU_BLOCKS


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, activation: str, alpha: float,
           out_dtype: torch.dtype) -> torch.Tensor:
    """x (M, I), weight (I, O) in one dtype, bias (O,) float32 -> activation(x @ weight + bias) (M, O) out_dtype."""
    rows, inputs = x.shape
    outputs = weight.shape[1]
    y = torch.empty((rows, outputs), dtype=out_dtype, device=x.device)
    bm, bn, bk = blocks()
    ieee = x.dtype == torch.float32
    if ieee and not INTERPRETED:
        bk = 32  # float32 tiles take twice the shared memory
    grid = (triton.cdiv(rows, bm), triton.cdiv(outputs, bn))
    linear_kernel[grid](x, weight, bias, y, rows, outputs, inputs, alpha, ACT=ACTIVATION_CODES[activation], BM=bm,
                        BN=bn, BK=bk, UPCAST=INTERPRETED, IEEE=ieee, num_warps=8)
    return y


def tail_arguments(tail: tuple[tuple[str, float], ...]) -> list:
    """A tail's steps as the kernels' (code, number) slots, identity in those left over."""
    if len(tail) > TAIL_SLOTS:
        raise ValueError(f"a tail of {len(tail)} steps; the kernels have {TAIL_SLOTS} slots")
    slots = [*tail, *([("identity", 0.0)] * (TAIL_SLOTS - len(tail)))]
    return [value for step, number in slots for value in (STEP_CODES[step], float(number))]


def likelihood(h: torch.Tensor, heads: list[tuple], x: torch.Tensor, samples: int) -> torch.Tensor:
    """h (N*K, H) the last hidden layer; heads [(W (H, D), b (D,), tail)]: [logits] or [mean, logvar]; x (N, D)
    float32 -> the likelihood's sum (N*K,) float32: sum_d x l - softplus(l), or sum_d logvar + (x - mean)^2 / var."""
    rows, width = h.shape
    data_dim = x.shape[1]
    gaussian = len(heads) == 2
    (weight, bias, tail), (weight2, bias2, tail2) = heads[0], heads[-1]
    out = torch.empty(rows, dtype=torch.float32, device=h.device)
    bm, bn, bk = blocks()
    if gaussian and not INTERPRETED:
        bn = 64  # two accumulators per program
    ieee = h.dtype == torch.float32
    if ieee and not INTERPRETED:
        bk = 32
    likelihood_kernel[(triton.cdiv(rows, bm),)](h, weight, bias, weight2, bias2, x, out, rows, data_dim, width,
                                                 samples, *tail_arguments(tail), *tail_arguments(tail2),
                                                 GAUSSIAN=gaussian, BM=bm, BN=bn, BK=bk,
                                                 UPCAST=INTERPRETED, IEEE=ieee, num_warps=8)
    return out


def fits_on_chip(hidden_widths: list[int], data_dim: int) -> bool:
    """Whether decoder() takes this decoder: one or two hidden layers of at most FUSED_MAX_WIDTH, D one tile."""
    return 1 <= len(hidden_widths) <= 2 and max(hidden_widths) <= FUSED_MAX_WIDTH and data_dim <= FUSED_MAX_OUTPUT


def decoder(mu: torch.Tensor, std: torch.Tensor, eps: torch.Tensor, layers: list[tuple], heads: list[tuple],
            x: torch.Tensor) -> torch.Tensor:
    """The whole decoder and the likelihood in one kernel: mu, std (N, L), eps (K, L) float32; layers [(W, b,
    activation, alpha)] one or two hidden layers, the first float32, W (in, out); heads as likelihood()'s;
    x (N, D) float32 -> the likelihood's sum per sample (N*K,) float32, sample s of point s // K."""
    points, latent_dim = mu.shape
    samples = eps.shape[0]
    (w1, b1, act1, alpha1), *second = layers
    w2, b2, act2, alpha2 = second[0] if second else (heads[0][0], heads[0][1], "identity", 0.0)  # unread if one
    (weight, bias, tail), (weight2, bias2, tail2) = heads[0], heads[-1]
    h1, h2, data_dim = w1.shape[1], weight.shape[0], x.shape[1]
    rows = points * samples
    out = torch.empty(rows, dtype=torch.float32, device=mu.device)
    bm = 128 if INTERPRETED else 64
    decoder_kernel[(triton.cdiv(rows, bm),)](
        mu, std, eps, w1, b1, w2, b2, weight, bias, weight2, bias2, x, out, rows, latent_dim, h1, h2, data_dim,
        samples, float(alpha1), float(alpha2), *tail_arguments(tail), *tail_arguments(tail2),
        ACT1=ACTIVATION_CODES[act1], ACT2=ACTIVATION_CODES[act2], TWO=bool(second), GAUSSIAN=len(heads) == 2,
        BM=bm, LP=max(16, triton.next_power_of_2(latent_dim)), H1P=max(16, triton.next_power_of_2(h1)),
        BJ=32 if w2.dtype == torch.float32 and not INTERPRETED else 64,  # float32 tiles: half as many columns
        DP=max(16, triton.next_power_of_2(data_dim)), UPCAST=INTERPRETED, IEEE_HIDDEN=w2.dtype == torch.float32,
        IEEE=weight.dtype == torch.float32,
        num_warps=8)
    return out
