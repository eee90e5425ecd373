"""Fits the cosine -> confidence knots on real impostor pairs and checks the seed's FAR promise.

The SenseTime v1 seed promises that verification confidence thresholds 0.4 ... 0.9 mean false-accept
rates 1e-1 ... 1e-6. The server's `ConfidenceMap` is piecewise linear through one knot per promise
(cosine at that FAR -> its confidence); this script measures where those cosines lie for the
installed recognition model, on a labelled photo folder (default: the shared CelebA dev set).

    .venv/bin/python bench/calibrate.py            # ~2 min of embedding on 2 cores, then cached
    .venv/bin/python bench/calibrate.py --write    # also store the fitted knots in the manifest

Method (docs/matching.md, "Calibration"):
- every photo goes through the server's own path: `decode_image(bytes)`, `FaceAnalyzer.analyze`,
  largest face (`faces[0]`); photos without a face are counted and left out;
- impostor pairs are all pairs of photos of different identities, genuine pairs all pairs of the
  same identity. All ~5M impostor scores are kept (20 MB), so quantiles are exact, no histogram;
- label noise (one photo filed under two identities) would put "impostors" at cosine ~1 and
  wreck the far tail: cross-identity pairs with identical file bytes or cosine > 0.95 are dropped
  from the impostors and listed;
- CelebA's commoner noise, a photo of person X filed under Y, is caught by its mean cosine to
  X's photos (MISLABEL_MEAN); such photos are left out of all pairs and listed;
- a knot is the cosine with exactly floor(FAR * n) impostor pairs above it, when that count is at
  least MIN_TAIL_PAIRS; further out the empirical quantile rests on a handful of pairs, so the
  knot is extrapolated from an exponential tail fitted to the top TAIL_FIT_FAR of impostor scores.
  Impostor score tails of ArcFace models decay faster than exponentially, so this errs towards
  higher thresholds, i.e. towards fewer false accepts than promised;
- held-out check: identities are split in two halves (alternating in numeric order); knots fitted
  on one half are measured on the impostor pairs of the other, both ways round. The knots written
  to the manifest are fitted on all identities.

Deterministic: no sampling anywhere.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from host import cpu_model

from app.config import get_settings
from app.errors import ApiError
from app.media.decode import decode_image
from app.services.confidence import ConfidenceMap
from app.vision.manifest import CalibrationKnot, load_manifest
from app.vision.pipeline import FaceAnalyzer

REPO = Path(__file__).resolve().parents[1]
CELEBA = REPO.parent / "shared" / "data" / "celeba-dev"
CACHE = Path("/tmp/facesrv_celeba_embeddings.npz")
DUPLICATE_COSINE = 0.95  # far above any genuine impostor seen; below a re-encoded copy (~0.99+)
# A photo whose mean cosine to *all* photos of another identity is above this (and above its mean
# to its own identity) is a photo of that other person: genuine pairs average ~0.5 here, while the
# closest pair of look-alike identities in celeba-dev averages 0.28 across their photos.
MISLABEL_MEAN = 0.35
MIN_TAIL_PAIRS = 20  # fewer impostor pairs above a knot than this and its quantile is noise
TAIL_FIT_FAR = 1e-4  # the exponential tail is fitted to excesses over this impostor quantile
BLOCK = 512  # rows of the similarity matrix computed at once


@dataclass(frozen=True)
class Embeddings:
    """One row per photo of the folder; `found` is False where no face was detected."""

    images: np.ndarray  # (N,) str
    identities: np.ndarray  # (N,) str
    file_sha256: np.ndarray  # (N,) str
    found: np.ndarray  # (N,) bool
    vectors: np.ndarray  # (N, 512) float32, unit length where found, zero elsewhere


@dataclass(frozen=True)
class Pairs:
    """Scores of every pair of distinct photos (with a face), split by same/different identity."""

    genuine: np.ndarray  # float32, ascending
    impostor: np.ndarray  # float32, ascending
    duplicates: list[tuple[int, int, float]]  # cross-identity pairs dropped as label noise


@dataclass(frozen=True)
class Knot:
    """A fitted knot and how much evidence stands behind it."""

    far: float
    confidence: float
    cosine: float
    pairs_above: int  # impostor pairs strictly above `cosine` in the fitting data
    extrapolated: bool


def read_labels(folder: Path) -> list[tuple[str, str]]:
    """(image, identity) rows of identities.tsv, in file order."""
    lines = (folder / "identities.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    image_col, identity_col = header.index("image"), header.index("identity")
    rows = [line.split("\t") for line in lines[1:] if line.strip()]
    return [(row[image_col], row[identity_col]) for row in rows]


_analyzer: FaceAnalyzer | None = None


def _init_worker() -> None:
    global _analyzer
    settings = get_settings()
    _analyzer = FaceAnalyzer.load(settings.model_manifest, settings.models_dir, threads=1)


def _embed_one(path: str) -> tuple[str, np.ndarray | None]:
    """File sha256 and the largest face's embedding, decoded and analysed as the server does."""
    assert _analyzer is not None
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        rgb = decode_image(data).rgb
    except ApiError:
        return digest, None
    faces = _analyzer.analyze(rgb)
    return digest, (faces[0].embedding if faces else None)


def model_key(manifest_path: Path) -> str:
    """Detector and recognizer hashes: a cache made with other models must not be reused."""
    models = load_manifest(manifest_path).models
    return f"{models['detection'].sha256}:{models['recognition'].sha256}"


def embed(folder: Path, cache: Path, manifest_path: Path, workers: int) -> Embeddings:
    """Embeddings of every photo of `folder`, from `cache` when it matches photos and models."""
    labels = read_labels(folder)
    images = np.array([image for image, _ in labels])
    identities = np.array([identity for _, identity in labels])
    key = model_key(manifest_path)
    if cache.is_file():
        stored = np.load(cache)
        if str(stored["model_key"]) == key and np.array_equal(stored["images"], images):
            return Embeddings(
                images, identities, stored["file_sha256"], stored["found"], stored["vectors"]
            )
    started = time.perf_counter()
    paths = [str(folder / "images" / image) for image in images]
    with Pool(workers, initializer=_init_worker) as pool:
        results = pool.map(_embed_one, paths, chunksize=32)
    print(f"embedded {len(paths)} photos in {time.perf_counter() - started:.0f} s")
    found = np.array([vector is not None for _, vector in results])
    vectors = np.zeros((len(paths), 512), dtype=np.float32)
    for row, (_, vector) in enumerate(results):
        if vector is not None:
            vectors[row] = vector
    file_sha256 = np.array([digest for digest, _ in results])
    np.savez(
        cache, model_key=key, images=images, file_sha256=file_sha256, found=found, vectors=vectors
    )
    return Embeddings(images, identities, file_sha256, found, vectors)


def mislabelled(emb: Embeddings) -> np.ndarray:
    """Photos filed under the wrong identity (bool mask), by their mean cosine per identity.

    CelebA's label noise is mostly a photo of person X filed under Y: its pairs with X's photos
    are genuine pairs labelled impostor (cosine 0.5-0.7, far into the FAR 1e-5 tail) and its
    pairs with Y's photos the reverse, so such photos are left out of all pairs.
    """
    labels = sorted(set(emb.identities[emb.found].tolist()))
    means = np.full((len(emb.images), len(labels)), -np.inf)
    own = np.full(len(emb.images), -np.inf)
    for column, label in enumerate(labels):
        members = emb.found & (emb.identities == label)
        sums = emb.vectors @ emb.vectors[members].sum(axis=0)
        means[:, column] = sums / members.sum()
        if members.sum() > 1:
            self_scores = np.einsum("ij,ij->i", emb.vectors, emb.vectors)
            own[members] = (sums[members] - self_scores[members]) / (members.sum() - 1)
        means[members, column] = -np.inf
    best = means.max(axis=1)
    return emb.found & (best > MISLABEL_MEAN) & (best > own)


def score_pairs(emb: Embeddings, keep: np.ndarray) -> Pairs:
    """All pair scores among the photos selected by `keep` (bool mask) that have a face.

    Block-wise over rows of the upper triangle so memory stays O(BLOCK * N) however large N.
    """
    rows = np.flatnonzero(keep & emb.found)
    vectors, identities = emb.vectors[rows], emb.identities[rows]
    hashes = emb.file_sha256[rows]
    genuine: list[np.ndarray] = []
    impostor: list[np.ndarray] = []
    duplicates: list[tuple[int, int, float]] = []
    for start in range(0, len(rows), BLOCK):
        stop = min(start + BLOCK, len(rows))
        scores = vectors[start:stop] @ vectors.T
        upper = np.arange(len(rows))[None, :] > np.arange(start, stop)[:, None]
        same = identities[start:stop, None] == identities[None, :]
        copies = (scores > DUPLICATE_COSINE) | (hashes[start:stop, None] == hashes[None, :])
        noise = upper & ~same & copies
        for i, j in zip(*np.nonzero(noise), strict=True):
            duplicates.append((int(rows[start + i]), int(rows[j]), float(scores[i, j])))
        genuine.append(scores[upper & same])
        impostor.append(scores[upper & ~same & ~copies])
    return Pairs(np.sort(np.concatenate(genuine)), np.sort(np.concatenate(impostor)), duplicates)


def above(sorted_scores: np.ndarray, threshold: float) -> int:
    """How many scores are strictly above `threshold` (scores ascending)."""
    return int(len(sorted_scores) - np.searchsorted(sorted_scores, threshold, side="right"))


def exponential_tail(impostor: np.ndarray) -> tuple[float, float, float]:
    """(u, p_u, beta): P(score > u + x) ~ p_u * exp(-x / beta) fitted to the top TAIL_FIT_FAR.

    Peaks over threshold with a zero-shape GPD, whose maximum-likelihood scale is the mean excess.
    """
    count = int(TAIL_FIT_FAR * len(impostor))
    top = impostor[-count:]
    u = float(impostor[-count - 1])
    return u, count / len(impostor), float(np.mean(top - u))


def fit_knots(impostor: np.ndarray, promises: list[CalibrationKnot]) -> list[Knot]:
    """The cosine at each promised FAR: empirical quantile, or the exponential tail past it."""
    u, p_u, beta = exponential_tail(impostor)
    knots = []
    for promise in promises:
        k = int(promise.far * len(impostor))
        if k >= MIN_TAIL_PAIRS:
            # Midway between the k-th and (k+1)-th highest score: exactly k pairs lie above.
            cosine = float(impostor[-k] + impostor[-k - 1]) / 2
            extrapolated = False
        else:
            cosine = u + beta * float(np.log(p_u / promise.far))
            extrapolated = True
        cosine = round(cosine, 4)
        knots.append(
            Knot(promise.far, promise.confidence, cosine, above(impostor, cosine), extrapolated)
        )
    return knots


def accepted(sorted_scores: np.ndarray, confidence_map: ConfidenceMap, threshold: float) -> int:
    """Pairs the server would call a match at `threshold` (confidence > threshold, as it does).

    The map is monotone, so this is a bisection with the server's own map as the key.
    """
    first = bisect.bisect_right(sorted_scores, threshold, key=confidence_map)
    return len(sorted_scores) - first


def rate(count: int, total: int) -> str:
    return f"{count / total:.2e} ({count:>7,}/{total:,})"


def print_fit(knots: list[Knot], pairs: Pairs) -> None:
    print(
        f"{'FAR target':>10} {'cosine':>7} {'measured FAR (pairs above)':>30} "
        f"{'TAR (genuine accepted)':>30}  knot"
    )
    for knot in knots:
        far = rate(above(pairs.impostor, knot.cosine), len(pairs.impostor))
        tar = rate(above(pairs.genuine, knot.cosine), len(pairs.genuine))
        kind = "extrapolated (exp. tail)" if knot.extrapolated else "empirical"
        print(f"{knot.far:>10.0e} {knot.cosine:>7.4f} {far:>30} {tar:>30}  {kind}")


def print_promise(
    confidence_map: ConfidenceMap, promises: list[CalibrationKnot], pairs: Pairs
) -> None:
    print(f"{'confidence >':>12} {'promised FAR':>12} {'measured FAR':>28} {'TAR':>28}")
    for promise in promises:
        threshold = promise.confidence
        far = rate(accepted(pairs.impostor, confidence_map, threshold), len(pairs.impostor))
        tar = rate(accepted(pairs.genuine, confidence_map, threshold), len(pairs.genuine))
        print(f"{promise.confidence:>12.1f} {promise.far:>12.0e} {far:>28} {tar:>28}")


def held_out(emb: Embeddings, keep: np.ndarray, promises: list[CalibrationKnot]) -> None:
    """Fit on half the identities, measure FAR and TAR on the other half, both ways round."""
    ordered = sorted(set(emb.identities.tolist()), key=int)
    halves = (set(ordered[0::2]), set(ordered[1::2]))
    for fit_half, test_half in ((0, 1), (1, 0)):
        fit_pairs = score_pairs(emb, keep & np.isin(emb.identities, list(halves[fit_half])))
        test_pairs = score_pairs(emb, keep & np.isin(emb.identities, list(halves[test_half])))
        knots = fit_knots(fit_pairs.impostor, promises)
        print(
            f"\nheld-out: knots fitted on half {'AB'[fit_half]} ({len(halves[fit_half])} "
            f"identities, {len(fit_pairs.impostor):,} impostor pairs), measured on half "
            f"{'AB'[test_half]} ({len(halves[test_half])} identities)"
        )
        print_fit(knots, test_pairs)


def write_knots(manifest_path: Path, knots: list[Knot], fitted_for: dict[str, str]) -> None:
    """Replace the text of `calibration.knots` and `calibration.fitted_for` (the recognition
    weights the knots were fitted on, which `facesrv reembed` compares with a new model) only,
    keeping the rest of the file byte for byte.

    json.dumps(indent=2) of the whole manifest would unfold its one-line arrays (mean, template,
    bin_values), so the knots array is located and re-rendered in place, then the result is
    checked to parse to the old manifest with only those two entries changed.
    """
    text = manifest_path.read_text(encoding="utf-8")
    raw = json.loads(text)
    calibration = text.index('"calibration"')
    start = text.index("[", text.index('"knots"', calibration))
    stop = text.index("]", start) + 1  # knots hold no nested arrays
    indent = " " * (start - text.rfind("\n", 0, start) - 1 - len('"knots": '))
    values = [{"far": k.far, "cosine": k.cosine, "confidence": k.confidence} for k in knots]
    rendered = json.dumps(values, indent=2).replace("\n", "\n" + indent)
    new_text = text[:start] + rendered + text[stop:]
    fitted = json.dumps(fitted_for, indent=2).replace("\n", "\n" + indent)
    if '"fitted_for"' in new_text[calibration:]:
        begin = new_text.index("{", new_text.index('"fitted_for"', calibration))
        end = new_text.index("}", begin) + 1  # a flat object
        new_text = new_text[:begin] + fitted + new_text[end:]
    else:
        knots_at = new_text.index('"knots"', calibration)
        new_text = f'{new_text[:knots_at]}"fitted_for": {fitted},\n{indent}{new_text[knots_at:]}'
    raw["calibration"]["knots"] = values
    raw["calibration"]["fitted_for"] = fitted_for
    if json.loads(new_text) != raw:
        raise RuntimeError("rewriting the knots would change more than the knots; not written")
    manifest_path.write_text(new_text, encoding="utf-8")


def main() -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=CELEBA, help="folder with identities.tsv")
    parser.add_argument("--manifest", type=Path, default=settings.model_manifest)
    parser.add_argument("--cache", type=Path, default=CACHE, help="embeddings cache (npz)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--write", action="store_true", help="store fitted knots in --manifest")
    args = parser.parse_args()

    manifest = load_manifest(args.manifest)
    models = manifest.models
    print(f"machine: {platform.platform()}, {cpu_model()}, {os.cpu_count()} cores")
    print(
        f"models: detection {models['detection'].file} ({models['detection'].sha256[:12]}), "
        f"recognition {models['recognition'].file} ({models['recognition'].sha256[:12]})"
    )
    print(f"manifest: {args.manifest}\ndata: {args.data}")

    emb = embed(args.data, args.cache, args.manifest, args.workers)
    missing = emb.images[~emb.found]
    print(
        f"photos: {len(emb.images):,} of {len(set(emb.identities.tolist()))} identities; "
        f"no face found in {len(missing)}: {', '.join(missing.tolist()) or '-'}"
    )
    wrong = mislabelled(emb)
    print(
        f"mislabelled photos left out (mean cosine > {MISLABEL_MEAN} to another identity's "
        f"photos, above their own): {len(np.flatnonzero(wrong))}"
    )
    for i in np.flatnonzero(wrong):
        print(f"  {emb.images[i]} (filed under {emb.identities[i]})")
    pairs = score_pairs(emb, ~wrong)
    print(
        f"pairs: {len(pairs.genuine):,} genuine, {len(pairs.impostor):,} impostor; "
        f"{len(pairs.duplicates)} cross-identity near-duplicates dropped as label noise "
        f"(same file or cosine > {DUPLICATE_COSINE}):"
    )
    for i, j, cosine in pairs.duplicates:
        print(
            f"  {emb.images[i]} (id {emb.identities[i]}) ~ {emb.images[j]} "
            f"(id {emb.identities[j]}): cosine {cosine:.4f}"
        )
    u, p_u, beta = exponential_tail(pairs.impostor)
    print(
        f"impostor tail: P(cos > {u:.4f} + x) = {p_u:.0e} * exp(-x / {beta:.4f}); "
        f"knots with < {MIN_TAIL_PAIRS} impostor pairs above are taken from this fit"
    )

    promises = sorted(manifest.calibration.knots, key=lambda knot: knot.far, reverse=True)
    knots = fit_knots(pairs.impostor, promises)
    print("\nfitted knots (all identities):")
    print_fit(knots, pairs)
    held_out(emb, ~wrong, promises)

    print(f"\nthe promise under the manifest's current knots ({args.manifest.name}):")
    print_promise(ConfidenceMap(manifest.calibration), promises, pairs)
    if args.write:
        spec = manifest.models["recognition"]
        write_knots(args.manifest, knots, {"file": spec.file, "sha256": spec.sha256})
        print(f"\nwrote {len(knots)} knots to {args.manifest}")


if __name__ == "__main__":
    main()
