"""A model that offers a likelihood-ratio reference beside the plain one: a second model name sharing the graphs.

A version has one reference.json, so a model scored both ways is two names: <model> keeps its loglik reference,
and <model>-ratio (say) holds the very same encoder.onnx and decoder.onnx bytes, a manifest that differs only in
its name, version, description and a "graphs_of" entry, and a reference with score "likelihood_ratio" against the
background. The service loads and caches them as two versions, each with its own digest.
"""

import json
import shutil
from pathlib import Path

from modelrepo import check_graphs, load_manifest
from modelrepo.contract import MANIFEST_FILE
from training.export import move_into_place, staging_for, validated_manifest, version_target
from training.pipeline import manifest_data, reference_points, version_folder
from training.reference import write_ratio_reference


def write_ratio_model(repository: Path, model: str, background: str, name: str, version: int = 1,
                      force: bool = False, progress: bool = True) -> Path:
    """<repository>/<name>/<version>: the graphs of `model` ("name:version") scored against `background`."""
    source_folder, background_folder = version_folder(repository, model), version_folder(repository, background)
    source, subtracted = load_manifest(source_folder), load_manifest(background_folder)
    points = reference_points(manifest_data(source), source.likelihood.type)
    if points is None:
        raise ValueError(f"{model}: no calibration points, so no reference")
    target = version_target(repository, name, version, force)
    staging = staging_for(target)
    try:
        for graph in (source.encoder, source.decoder):
            shutil.copyfile(source_folder / graph, staging / graph)
        document = json.loads((source_folder / MANIFEST_FILE).read_text())
        document.update(
            name=name, version=version, graphs_of=source.reference,
            description=f"{source.reference} scored by likelihood ratio against the background model {background} "
                        f"(Ren et al. 2019): the same graphs, a reference of log p_model(x) - log p_background(x). "
                        f"{getattr(source, 'description', '')}".strip(),
        )
        (staging / MANIFEST_FILE).write_text(json.dumps(document, indent=2) + "\n")
        manifest = validated_manifest(staging, name, version)
        check_graphs(manifest, staging)
        write_ratio_reference(manifest, staging, subtracted, background_folder, points, progress=progress)
        move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
