"""The core's vocabulary: entity kinds, change-log ops, dialects, task states.

They are `StrEnum`s so that the values stored in the database and sent on the wire are the plain
strings they always were, while the code names each one in exactly one place.
"""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    """The three entity kinds that hold members. Groups and facesets also have a vector index."""

    PERSON = "person"
    GROUP = "group"
    FACESET = "faceset"


class ChangeOp(StrEnum):
    """What an `IndexChange` row did to a collection's index."""

    ADD = "add"
    REMOVE = "remove"
    DROP = "drop"  # the whole collection went
    PRUNED = "pruned"  # a marker: log rows up to `face_id` (a seq) were deleted


class Dialect(StrEnum):
    """The vendor APIs an account may hold a credential for."""

    SENSETIME = "sensetime"
    TENCENT = "tencent"
    HUAWEI = "huawei"
    HUAWEI_TOKEN = "huawei-token"  # an X-Auth-Token for Huawei's door, for curl-style callers
    ALIBABA = "alibaba"


class TaskStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


ACTIVE_TASK_STATUSES = (TaskStatus.PENDING, TaskStatus.PROCESSING)
