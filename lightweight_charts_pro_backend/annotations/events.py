"""What the annotations service announces after each committed change of an annotation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AnnotationOp = Literal["create", "update", "delete"]


@dataclass(frozen=True, slots=True)
class AnnotationEvent:
    """One change of one annotation of a chart.

    ``sequence`` numbers the changes of the chart's annotations (1, 2, ... per chart, assigned by
    the store in commit order): sockets receive them in that order. ``version`` is the
    annotation's version after the change (for a deletion, one more than its last). ``audience``
    is the owner of a private annotation, the only viewer who may see it; ``withdrawn`` says the
    change made a shared annotation private, so every other viewer must drop it. ``data`` holds
    the annotation's JSON (create, update), encoded once.
    """

    chart_id: str
    sequence: int
    op: AnnotationOp
    annotation_id: str
    version: int
    audience: str | None = None
    withdrawn: bool = False
    data: bytes | None = None
