"""The Triton kernels of the kernel tier: a layer (matmul + bias + activation) and the decoder's last layer fused
with the likelihood, so that the N*K*D likelihood parameters never reach global memory.

    linear:      y = activation(x @ W + b)                           x (M, I), W (I, O) -> y (M, O)
    likelihood:  out_s = sum_d term(x_{s // K, d}, (h_s @ W + b)_d)   h (M, H), x (N, D) -> out (M,) float32
                 Bernoulli term = x l - softplus(l); Gaussian term = logvar + (x - mean)^2 exp(-logvar)

Matmul operands are in the tier's precision (fp16, bf16 or fp32), accumulated in float32. Importing this
module imports torch and triton: engine.kernels.tier does it lazily, after setting TRITON_INTERPRET when it runs
the kernels on the CPU (tests), since triton reads that variable when a kernel is defined.
"""

import os

import torch
import triton
import triton.language as tl

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"  # as it was when these kernels were defined
ACTIVATION_CODES = {"identity": 0, "relu": 1, "leaky_relu": 2, "tanh": 3, "sigmoid": 4, "softplus": 5, "elu": 6}
# (rows, columns, reduction) per program. The interpreter runs one program at a time in NumPy: fewer, larger
# programs run faster there. The GPU sizes follow shared/gpu/README.md's 128-column tiles.
GPU_BLOCKS, INTERPRETER_BLOCKS = (128, 128, 64), (64, 64, 64)


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
    return v


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
                      GAUSSIAN: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                      UPCAST: tl.constexpr, IEEE: tl.constexpr):
    """One program: BM samples, all D columns in tiles of BN; W (H, D) gives the logits or the mean, W2 (H, D)
    the log-variance (Gaussian only)."""
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
        first = acc + tl.load(b_ptr + cols, mask=cols < D, other=0.0)[None, :]  # logits, or the mean
        if GAUSSIAN:
            logvar = acc2 + tl.load(b2_ptr + cols, mask=cols < D, other=0.0)[None, :]
            residual = x - first
            term = logvar + residual * residual * tl.exp(-logvar)
        else:
            term = x * first - _softplus(first)
        total += tl.sum(tl.where(inside, term, 0.0), axis=1)
    tl.store(out_ptr + rows, total, mask=rows < M)


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


def likelihood(h: torch.Tensor, heads: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor,
               samples: int) -> torch.Tensor:
    """h (N*K, H) the last hidden layer; heads [(W (H, D), b (D,))]: [logits] or [mean, logvar]; x (N, D) float32
    -> the likelihood's sum (N*K,) float32: sum_d x l - softplus(l), or sum_d logvar + (x - mean)^2 / var."""
    rows, width = h.shape
    data_dim = x.shape[1]
    gaussian = len(heads) == 2
    (weight, bias), (weight2, bias2) = heads[0], heads[-1]
    out = torch.empty(rows, dtype=torch.float32, device=h.device)
    bm, bn, bk = blocks()
    if gaussian and not INTERPRETED:
        bn = 64  # two accumulators per program
    ieee = h.dtype == torch.float32
    if ieee and not INTERPRETED:
        bk = 32
    likelihood_kernel[(triton.cdiv(rows, bm),)](h, weight, bias, weight2, bias2, x, out, rows, data_dim, width,
                                                 samples, GAUSSIAN=gaussian, BM=bm, BN=bn, BK=bk,
                                                 UPCAST=INTERPRETED, IEEE=ieee, num_warps=8)
    return out
