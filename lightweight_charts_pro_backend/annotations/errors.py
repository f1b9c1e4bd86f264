"""The annotation feature's refusals, rendered by the one error envelope like every ChartsError."""

from __future__ import annotations

from ..errors import ChartsError, PayloadTooLarge


class AnnotationNotFound(ChartsError):
    """Absent, or private to someone else (the two are not told apart)."""

    status_code = 404
    error_code = "ANNOTATION_NOT_FOUND"

    def __init__(self, chart_id: str, annotation_id: str) -> None:
        super().__init__(f"Annotation '{annotation_id}' does not exist in chart '{chart_id}'.")


class AnnotationConflict(ChartsError):
    """The annotation changed since the version the client read; nothing was changed."""

    status_code = 409
    error_code = "ANNOTATION_CONFLICT"


class AnnotationExists(ChartsError):
    status_code = 409
    error_code = "ANNOTATION_EXISTS"


class TooManyAnnotations(PayloadTooLarge):
    """The chart holds MAX_ANNOTATIONS_PER_CHART already."""

    error_code = "TOO_MANY_ANNOTATIONS"


class AnnotationTooLarge(PayloadTooLarge):
    """An annotation (its write body or its stored JSON) above MAX_ANNOTATION_BYTES."""

    error_code = "ANNOTATION_TOO_LARGE"
