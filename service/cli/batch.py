"""`python -m service score NAME --data FILE --out FILE.npz`: a whole data file scored against the version's
reference, as /score scores it, in bounded chunks, resumable.

The output is one .npz (NumPy reads it with no other library; parquet would add pyarrow, ~100 MB, to the
service for four columns): loglik, stderr, score, p_value, is_outlier (and background_loglik for a likelihood
ratio), one entry per point in the file's order, and model, fpr, threshold and reference (JSON text). While it
runs, each chunk is written to FILE.npz.parts/ under a temporary name and renamed into place; a run that is
interrupted continues from the chunks it finished, provided it asks the same of the same files (the run's
identity is kept in FILE.npz.parts/run.json); the parts are removed once FILE.npz is in place.
"""

import json
import shutil
from pathlib import Path

import numpy as np

from modelrepo.datafiles import DataFile
from modelrepo.files import npz_bytes, write_atomic
from service.cli.offline import CHUNK_ROWS, open_repository, scored_chunks
from service.dataplane.scoring import threshold_for
from service.errors import InvalidInput
from service.settings import Settings

RUN_FILE = "run.json"


def score_file(settings: Settings, model: str, data_path: Path, out: Path, fpr: float | None,
               key: str | None = None, chunk_rows: int = CHUNK_ROWS) -> dict:
    """Score the file; returns a summary (points, outliers, resumed_from)."""
    repository = open_repository(settings)
    engine = repository.resolve(model, settings.default_model)
    reference, background = repository.scoring(engine)
    fpr = settings.default_fpr if fpr is None else fpr
    threshold = threshold_for(engine, fpr)
    data = DataFile(data_path, key)
    parts = out.with_name(out.name + ".parts")
    run = {"model": engine.ref, "digest": engine.digest, "background": background.digest if background else None,
           "data": str(data_path.resolve()), "data_bytes": data_path.stat().st_size,
           "data_mtime_ns": data_path.stat().st_mtime_ns, "key": key, "rows": len(data), "chunk_rows": chunk_rows}
    first = _resume(parts, run)
    for chunk in scored_chunks(engine, background, data, reference.k, reference.seed, first, chunk_rows):
        arrays = {"loglik": chunk.loglik, "stderr": chunk.stderr, "score": chunk.score}
        if chunk.background_loglik is not None:
            arrays["background_loglik"] = chunk.background_loglik
        write_atomic(parts / f"part-{chunk.first:012d}.npz", npz_bytes(arrays))
    columns = _gather(parts, len(data))
    p_value = engine.conformal.p_values(columns["score"])
    columns.update(p_value=p_value, is_outlier=p_value <= fpr)
    write_atomic(out, npz_bytes({**columns, "model": engine.ref, "fpr": fpr, "threshold": threshold,
                            "reference": json.dumps(reference.summary())}))
    shutil.rmtree(parts)
    return {"points": len(data), "outliers": int(columns["is_outlier"].sum()), "resumed_from": first,
            "model": engine.ref, "threshold": threshold}


def _resume(parts: Path, run: dict) -> int:
    """The first row still to score: after the finished chunks of the same run, 0 for a new one."""
    run_file = parts / RUN_FILE
    if run_file.exists():
        if json.loads(run_file.read_text()) != run:
            raise InvalidInput(f"--out: {parts} holds the parts of another run (a different model version, data "
                               "file or chunk size); remove that folder to start again, or score to another --out")
        done = sorted(parts.glob("part-*.npz"))
        return len(done) * run["chunk_rows"] if done else 0
    parts.mkdir(parents=True, exist_ok=True)
    write_atomic(run_file, json.dumps(run, indent=1).encode())
    return 0


def _gather(parts: Path, rows: int) -> dict[str, np.ndarray]:
    pieces = []
    for path in sorted(parts.glob("part-*.npz")):
        with np.load(path) as part:
            pieces.append({name: part[name] for name in part.files})
    columns = {name: np.concatenate([piece[name] for piece in pieces]) for name in pieces[0]}
    if len(columns["score"]) != rows:
        raise RuntimeError(f"{parts}: the parts hold {len(columns['score'])} of {rows} points; remove the folder "
                           "and run again")
    return columns
