"""Google's error shape: {"error": {"code", "message", "status", "errors": [{"message", "domain", "reason"}], "details"}}."""

from __future__ import annotations

STATUS_BY_CODE = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
    409: "ABORTED", 412: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
    501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
REASON_BY_STATUS = {
    "INVALID_ARGUMENT": "badRequest", "FAILED_PRECONDITION": "failedPrecondition", "OUT_OF_RANGE": "badRequest",
    "UNAUTHENTICATED": "required", "PERMISSION_DENIED": "forbidden", "NOT_FOUND": "notFound",
    "ALREADY_EXISTS": "alreadyExists", "ABORTED": "aborted", "RESOURCE_EXHAUSTED": "rateLimitExceeded",
    "INTERNAL": "backendError", "UNAVAILABLE": "backendError", "DEADLINE_EXCEEDED": "backendError",
    "UNIMPLEMENTED": "notImplemented", "METHOD_NOT_ALLOWED": "methodNotAllowed", "CANCELLED": "cancelled",
}
# google.rpc.Code numbers, for errors carried inside google.longrunning operations.
RPC_CODE = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9, "ABORTED": 10,
    "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}
FAULT_MESSAGES = {
    429: "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute' of service.",
    500: "Internal error encountered.",
    502: "Bad Gateway",
    503: "The service is currently unavailable.",
    504: "The request timed out. Please try again.",
}


class ApiError(Exception):
    """An error answer. Handlers raise it; the server renders it in Google's shape."""

    def __init__(self, code, message, status=None, reason=None, field=None, description=None, details=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_BY_CODE.get(code, "UNKNOWN")
        self.reason = reason or REASON_BY_STATUS.get(self.status, "unknown")
        self.details = list(details or [])
        if field:
            self.details.append({"@type": "type.googleapis.com/google.rpc.BadRequest",
                                 "fieldViolations": [{"field": field, "description": description or message}]})

    def body(self):
        error = {"code": self.code, "message": self.message, "status": self.status,
                 "errors": [{"message": self.message, "domain": "global", "reason": self.reason}]}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def not_found(message, reason=None):
    return ApiError(404, message, status="NOT_FOUND", reason=reason)


def already_exists(message, reason=None):
    return ApiError(409, message, status="ALREADY_EXISTS", reason=reason)


def invalid(message, field=None, reason=None):
    return ApiError(400, message, status="INVALID_ARGUMENT", reason=reason, field=field)


def failed_precondition(message, reason=None):
    return ApiError(400, message, status="FAILED_PRECONDITION", reason=reason)


def aborted(message, reason=None):
    return ApiError(409, message, status="ABORTED", reason=reason)


def fault(code):
    """The answer to an injected fault (429, 500, 503 ...)."""
    return ApiError(code, FAULT_MESSAGES.get(code, "Injected fault."))
