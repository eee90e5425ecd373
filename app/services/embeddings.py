"""Which of a face's embeddings a server compares: the one its own recognition model made.

A face row holds `embedding` (made by `embedding_model`) and, around a model change, a second
one in `alt_embedding` (made by `alt_embedding_model`): the next model's while `facesrv reembed`
prepares, the previous model's once it switched the account. A server reads, per face, the
embedding of the model it runs (its manifest's recognition entry) and ignores a face that has
none: cosines between two models' embeddings mean nothing, so a face whose image was not kept
(and so could not be re-embedded) drops out of the new model's searches instead of matching at
random. Servers on the old and on the new model therefore both answer correctly during the
rolling restart that follows a re-embed.
"""

from __future__ import annotations

import numpy as np

from app.db.models import Face
from app.errors import bad_request


def served_vector(face: Face, model: str | None) -> np.ndarray | None:
    """The loaded face's embedding by `model`, or None when it has none (None: `embedding`)."""
    if model is None or face.embedding_model == model:
        return np.frombuffer(face.embedding, dtype=np.float32)
    if face.alt_embedding_model == model and face.alt_embedding is not None:
        return np.frombuffer(face.alt_embedding, dtype=np.float32)
    return None


def require_vector(face: Face, model: str | None) -> np.ndarray:
    """`served_vector`, or INVALID_FACE naming why: the face was made by another model."""
    vector = served_vector(face, model)
    if vector is None:
        raise bad_request(
            "INVALID_FACE",
            f"face {face.public_id} was embedded by {face.embedding_model}, not by this "
            f"server's recognition model {model}, and could not be re-embedded "
            "(its image was not kept): detect it again",
        )
    return vector
