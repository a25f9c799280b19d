"""Kubernetes ``Status`` errors, shaped exactly as the real API server sends them.

Every failure the emulator reports travels as an :class:`ApiError`, raised by
the pure core (store, selectors, patches) and turned into an HTTP response by
the server shell.  The constructors below reproduce the apiserver's reasons
and messages word for word where clients are known to parse them
(``NotFound``, ``AlreadyExists``, ``Conflict``, ``Expired``).

Not here: HTTP.  This module only builds the JSON body and carries the code.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]


class ApiError(Exception):
    """A failure to report as a ``v1 Status`` with ``status: Failure``."""

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> JSON:
        """The ``Status`` object the real server would send."""
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(group: str, plural: str, name: str) -> JSON:
    details: JSON = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = plural
    return details


def _qualified(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(group: str, plural: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{_qualified(group, plural)} "{name}" not found', _details(group, plural, name))


def resource_not_found() -> ApiError:
    """Unknown URL or resource type: the apiserver's generic 404."""
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{_qualified(group, plural)} "{name}" already exists', _details(group, plural, name)
    )


def conflict(group: str, plural: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(group, plural)} "{name}": {why}',
        _details(group, plural, name),
    )


def modified_conflict(group: str, plural: str, name: str) -> ApiError:
    return conflict(
        group,
        plural,
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(group: str, plural: str, kind: str, name: str, field: str, why: str) -> ApiError:
    """422 Invalid with one field cause, like apimachinery's field errors."""
    details: JSON = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = [{"reason": "FieldValueInvalid", "message": f"Invalid value: {why}", "field": field}]
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {field}: Invalid value: {why}', details)


def expired_watch(requested: int, oldest: int) -> ApiError:
    """What the watch cache reports for a version older than its window."""
    return ApiError(410, "Expired", f"too old resource version: {requested} ({oldest})")


def expired_list() -> ApiError:
    """What an exact list at a compacted version reports."""
    return ApiError(410, "Expired", "The resourceVersion for the provided list is too old.")


def too_large_resource_version(requested: int, current: int) -> ApiError:
    return ApiError(
        504,
        "Timeout",
        f"Too large resource version: {requested}, current: {current}",
        {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1},
    )


def method_not_allowed(method: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource ({method})")


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: application/json, "
        f"application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, "
        f"and application/vnd.kubernetes.protobuf for Namespace, ConfigMap, Secret and ServiceAccount "
        f"(got {content_type})",
    )


def internal_error(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")
