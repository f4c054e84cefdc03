"""Export a trained VAE as encoder.onnx + decoder.onnx + manifest.json (format vae-onnx/1, modelrepo.contract).

The graphs are checked against PyTorch in ONNX Runtime before anything is written; the version folder
is assembled under a temporary name, its reference.json scored on the staged graphs (training.reference), and
renamed into place, so a repository never holds half a model.
"""

import json
import logging
import os
import platform
import re
import shutil
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from modelrepo import FORMAT, check_graphs, load_manifest, sha256_of
from modelrepo.contract import (
    CATEGORICAL_LATENT,
    DECODER_CONDITION,
    DECODER_FILE,
    DECODER_INPUT,
    DECODER_OUTPUTS,
    ENCODER_FILE,
    ENCODER_INPUT,
    ENCODER_LOGITS,
    ENCODER_OUTPUTS,
    MANIFEST_FILE,
    NAME_PATTERN,
    UNIFORM_CATEGORICAL,
)
from training.autoregressive import with_masks_baked
from training.model import VAE
from training.reference import CalibrationPoints, write_loglik_reference

PARITY_TOLERANCE = 1e-4
logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # not torchvision-op notices in the user log
PARITY_BATCH_SIZES = (1, 3, 64)  # several sizes, so a batch size baked into a graph shows up


class ExportError(RuntimeError):
    """The export would not produce a model that keeps the contract."""


class EncoderGraph(nn.Module):
    """x [batch, *data_shape] -> mu [batch, L], logvar [batch, L]; or logits [batch, G, C] (categorical)."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.vae.posterior(x.flatten(1))


class DecoderGraph(nn.Module):
    """z [batch, L] (or [batch, G, C]) -> logits, or mean and logvar, each [batch, *data_shape].

    An autoregressive decoder takes x [batch, *data_shape] as its second input; export traces a copy whose
    masks are multiplied into the weights (with_masks_baked), so the graph holds plain zero-patterned weights,
    and checks it against the masked original."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae

    def forward(self, z: torch.Tensor, x: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        shape = self.vae.config.data_shape
        flat_x = None if x is None else x.flatten(1)
        return tuple(p.unflatten(1, shape) for p in self.vae.decode(z.flatten(1), flat_x))


def decoder_input_names(vae: VAE) -> list[str]:
    """["z"], or ["z", "x"] for an autoregressive decoder (the contract's names)."""
    return [DECODER_INPUT, DECODER_CONDITION] if vae.autoregressive else [DECODER_INPUT]


def output_names(vae: VAE) -> list[str]:
    return list(DECODER_OUTPUTS[vae.config.likelihood])


def encoder_output_names(vae: VAE) -> list[str]:
    return [ENCODER_LOGITS] if vae.config.latent == "categorical" else list(ENCODER_OUTPUTS)


def latent_shape(vae: VAE) -> tuple[int, ...]:
    """z without the batch axis: (L,), or (G, C) for categorical latents."""
    config = vae.config
    return (config.groups, config.categories) if config.latent == "categorical" else (config.latent_dim,)


def example_latents(vae: VAE, batch: int, rng: np.random.Generator) -> np.ndarray:
    """Decoder inputs to check: N(0, I) draws, or one-hot z with relaxed (softmax) rows mixed in."""
    if vae.config.latent != "categorical":
        return rng.standard_normal(size=(batch, vae.config.latent_dim)).astype(np.float32)
    groups, categories = latent_shape(vae)
    one_hot = np.eye(categories, dtype=np.float32)[rng.integers(categories, size=(batch, groups))]
    relaxed = rng.dirichlet(np.ones(categories), size=(batch, groups)).astype(np.float32)
    return np.where(np.arange(batch)[:, None, None] % 2 == 0, one_hot, relaxed)


def export_model(
    vae: VAE,
    repository: Path,
    name: str,
    version: int,
    extra_manifest: dict[str, Any] | None = None,
    force: bool = False,
    tolerance: float = PARITY_TOLERANCE,
    reference: CalibrationPoints | None = None,
    progress: bool = True,
) -> Path:
    """Write <repository>/<name>/<version>/ and return its path; with `reference`, its reference.json too (the
    points scored on the staged graphs, as the service will score them), before the version is moved into place."""
    target = version_target(repository, name, version, force)
    vae = vae.eval()
    staging = staging_for(target)
    try:
        data_example = torch.zeros(2, *vae.config.data_shape)
        _write_graph(EncoderGraph(vae), (data_example,), [ENCODER_INPUT], encoder_output_names(vae),
                     staging / ENCODER_FILE)
        decoder_examples = (torch.zeros(2, *latent_shape(vae)),) + ((data_example,) if vae.autoregressive else ())
        _write_graph(DecoderGraph(with_masks_baked(vae)), decoder_examples, decoder_input_names(vae), output_names(vae),
                     staging / DECODER_FILE)
        parity = check_parity(vae, staging, tolerance)
        manifest = _manifest(vae, name, version, staging, parity, extra_manifest or {})
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        # The folder must be named <name>/<version> for load_manifest; check under the final name's parts.
        validated = validated_manifest(staging, name, version)
        check_graphs(validated, staging)
        if reference is not None:
            write_loglik_reference(validated, staging, reference, progress=progress)
        move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def version_target(repository: Path, name: str, version: int, force: bool) -> Path:
    """<repository>/<name>/<version>, after checking the name and version and that it may be written."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise ExportError(f"model name {name!r} must match {NAME_PATTERN}")
    if version < 1:
        raise ExportError(f"version must be a positive integer, got {version}")
    target = Path(repository) / name / str(version)
    if target.exists() and not force:
        raise ExportError(f"{target} exists; pass --force to replace it or choose another version")
    return target


def staging_for(target: Path) -> Path:
    """An empty hidden folder beside `target`, where its version is assembled before move_into_place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))


def _write_graph(module: nn.Module, examples: tuple[torch.Tensor, ...], input_names: list[str], outputs: list[str],
                 path: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, examples, dynamo=True, input_names=input_names, output_names=outputs,
            dynamic_shapes=tuple({0: batch} for _ in examples), external_data=False, verbose=False,
        )
    program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path), full_check=True)


def check_parity(vae: VAE, folder: Path, tolerance: float) -> float:
    """Largest |ONNX Runtime - PyTorch| over random batches of several sizes; raises above `tolerance`.

    The graphs' input and output names are checked too (they are the contract's)."""
    rng = np.random.default_rng(0)
    cases = []
    for batch in PARITY_BATCH_SIZES:
        x = rng.uniform(size=(batch, *vae.config.data_shape)).astype(np.float32)
        z = example_latents(vae, batch, rng)
        decoder_inputs = (z, (rng.uniform(size=x.shape) < 0.5).astype(np.float32)) if vae.autoregressive else (z,)
        cases += [(folder / ENCODER_FILE, EncoderGraph(vae), [ENCODER_INPUT], encoder_output_names(vae), (x,)),
                  (folder / DECODER_FILE, DecoderGraph(vae), decoder_input_names(vae), output_names(vae),
                   decoder_inputs)]
    worst = 0.0
    sessions: dict[Path, ort.InferenceSession] = {}
    for path, module, input_names, outputs, values in cases:
        if path not in sessions:
            sessions[path] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            names = ([i.name for i in sessions[path].get_inputs()], [o.name for o in sessions[path].get_outputs()])
            if names != (input_names, outputs):
                wanted = (input_names, outputs)
                raise ExportError(f"{path.name}: inputs and outputs {names}, the contract needs {wanted}")
        got = run_onnx(sessions[path], dict(zip(input_names, values)))
        with torch.no_grad():
            want = [t.numpy() for t in module(*(torch.from_numpy(v) for v in values))]
        for g, w in zip(got, want):
            if g.shape != w.shape:
                raise ExportError(f"{path.name}: output shape {g.shape}, PyTorch gives {w.shape}")
            worst = max(worst, float(np.max(np.abs(g.astype(np.float64) - w))))
    if not worst <= tolerance:
        raise ExportError(f"ONNX Runtime differs from PyTorch by {worst:.3g} > {tolerance:g}; nothing was written")
    return worst


def run_onnx(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return session.run(None, feeds)


def _latent_entries(vae: VAE) -> dict:
    """The manifest's `prior` (and, for categorical latents, `latent`) entries."""
    config = vae.config
    if config.latent == "categorical":
        return {"latent": {"type": CATEGORICAL_LATENT, "groups": config.groups, "categories": config.categories},
                "prior": {"type": UNIFORM_CATEGORICAL}}
    return {"prior": vae.prior.manifest()}


def _manifest(vae: VAE, name: str, version: int, folder: Path, parity: float, extra: dict) -> dict:
    config = vae.config
    return {
        "format": FORMAT,
        "name": name,
        "version": version,
        "data_shape": list(config.data_shape),
        "latent_dim": config.latent_dim,
        "likelihood": {"type": config.likelihood, **({"autoregressive": True} if vae.autoregressive else {})},
        **_latent_entries(vae),
        "encoder": ENCODER_FILE,
        "decoder": DECODER_FILE,
        **extra,
        "model_config": config.to_dict(),
        "export": {
            "parity_max_abs_diff": parity,
            "parity_tolerance": PARITY_TOLERANCE,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "python": platform.python_version(),
        },
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sha256": {f: sha256_of(folder / f) for f in (ENCODER_FILE, DECODER_FILE)},
    }


def validated_manifest(staging: Path, name: str, version: int):
    """Validate the staged manifest as if it already lived at <name>/<version>."""
    with tempfile.TemporaryDirectory() as scratch:
        probe = Path(scratch) / name / str(version)
        probe.mkdir(parents=True)
        for item in staging.iterdir():
            os.symlink(item.resolve(), probe / item.name)
        return load_manifest(probe)


def move_into_place(staging: Path, target: Path) -> None:
    if not target.exists():
        os.rename(staging, target)
        return
    retired = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.rename(target, retired)
    os.rename(staging, target)
    shutil.rmtree(retired, ignore_errors=True)
