"""Which of a face's embeddings a server compares, in SQL (see `app.services.embeddings`).

Here, below both the services and the vector backend, because both read vectors from the store
by the server's recognition model.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, case

from app.db.models import Face

_faces = Face.__table__


def served_column(model: str | None) -> ColumnElement[bytes | None]:
    """SQL for the face's embedding by `model` (NULL when it has none); None: `embedding`."""
    if model is None:
        return _faces.c.embedding
    return case(
        (_faces.c.embedding_model == model, _faces.c.embedding),
        (_faces.c.alt_embedding_model == model, _faces.c.alt_embedding),
        else_=None,
    )
