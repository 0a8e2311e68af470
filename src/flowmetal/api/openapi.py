"""The OpenAPI 3.1 description of the HTTP API, written by hand next to the routes
(a test checks that every registered route is described here)."""

from __future__ import annotations

from typing import Any

from flowmetal import __version__

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Schema]:
    reasons = {
        400: "malformed JSON or request",
        401: "missing or wrong bearer token",
        404: "no such program, call or callback",
        409: "conflicts with the current state",
        413: "the request body is too large",
        422: "a field is missing or has the wrong type; or the program does not pass checking",
        503: "the store is unreachable",
    }
    return {str(s): _json(_ref("Error"), reasons[s]) for s in statuses}


def _body(schema: Schema, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _path(name: str, description: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


PROGRAM_ID = _path("id", "the program's id")
CALL_KEY = _path("key", "the call's key `PROGRAM:SEQ` (the ':' may be URL-encoded)")
ANY: Schema = {}  # any JSON value

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"},
                           "diagnostics": {"type": "array", "items": {"type": "object"}}},
        }},
    },
    "StartProgram": {
        "type": "object",
        "description": "Either `source` (with an optional `filename`) or `path` (a file the server reads).",
        "properties": {
            "source": {"type": "string"}, "filename": {"type": "string", "default": "program.flow"},
            "path": {"type": "string"},
            "args": {"type": "object", "default": {}, "description": "keyword arguments of main()"},
            "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$",
                   "description": "starting twice with one id, source and args is idempotent"},
        },
    },
    "Program": {
        "type": "object", "required": ["id", "status"],
        "properties": {
            "id": {"type": "string"},
            "status": {"enum": ["running", "waiting", "completed", "failed", "cancelled", "moved"]},
            "file": {"type": "string"}, "source_hash": {"type": "string"}, "args": {"type": "object"},
            "events": {"type": "integer"}, "created_at": {"type": "number"}, "updated_at": {"type": "number"},
            "waiting_on": ANY, "wake_at": {"type": ["number", "null"]}, "parent": {"type": ["string", "null"]},
            "result": ANY, "error": {"type": "string"},
            "warnings": {"type": "array", "items": {"type": "string"}},
        },
    },
    "ProgramList": {"type": "object", "properties": {"programs": {"type": "array", "items": _ref("Program")},
                                                     "next_cursor": {"type": ["string", "null"]}}},
    "Outcome": {
        "type": "object", "required": ["id", "status"],
        "properties": {"id": {"type": "string"}, "status": {"type": "string"}, "result": ANY,
                       "error": {"type": ["string", "null"]}},
    },
    "Event": {
        "type": "object", "required": ["program", "seq", "type", "at"],
        "properties": {"program": {"type": "string"}, "seq": {"type": "integer"}, "type": {"type": "string"},
                       "at": {"type": "number"}},
        "additionalProperties": True,
    },
    "History": {
        "type": "object",
        "properties": {"events": {"type": "array", "items": _ref("Event")}, "last_seq": {"type": "integer"}},
    },
    "State": {
        "type": "object",
        "properties": {"id": {"type": "string"}, "seq": {"type": "integer"},
                       "tasks": {"type": "array", "items": {"type": "object"}}, "globals": {"type": "object"}},
    },
    "Message": {
        "type": "object", "required": ["message"],
        "properties": {"message": ANY, "channel": {"type": "string", "default": "inbox",
                                                   "description": "names starting with '__' are reserved"}},
    },
    "Accepted": {"type": "object", "properties": {"id": {"type": "string"}, "status": {"type": "string"},
                                                  "channel": {"type": "string"}}},
    "Claim": {
        "type": "object", "required": ["names", "worker"],
        "properties": {
            "names": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "worker": {"type": "string", "description": "the claiming worker's id (fences its answers)"},
            "wait": {"type": "number", "minimum": 0, "default": 0,
                     "description": "long-poll up to this many seconds (at most 60)"},
            "lease": {"type": "number", "minimum": 0.1, "default": 30},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 1},
        },
    },
    "CallClaim": {
        "type": "object",
        "properties": {"key": {"type": "string"}, "program": {"type": "string"}, "kind": {"type": "string"},
                       "name": {"type": "string"},
                       "payload": {"description": "for functions: {\"args\": [...], \"kwargs\": {...}}"},
                       "attempt": {"type": "integer"}, "deadline": {"type": ["number", "null"]}},
    },
    "Claimed": {"type": "object", "properties": {"calls": {"type": "array", "items": _ref("CallClaim")}}},
    "Heartbeat": {
        "type": "object", "required": ["worker", "attempt"],
        "properties": {"worker": {"type": "string"}, "attempt": {"type": "integer", "minimum": 1},
                       "lease": {"type": "number", "default": 30}},
    },
    "Complete": {
        "type": "object", "required": ["worker", "attempt"],
        "properties": {"worker": {"type": "string"}, "attempt": {"type": "integer", "minimum": 1}, "result": ANY},
    },
    "Fail": {
        "type": "object", "required": ["worker", "attempt", "error"],
        "properties": {
            "worker": {"type": "string"}, "attempt": {"type": "integer", "minimum": 1},
            "error": {"type": "object", "required": ["type", "message"],
                      "properties": {"type": {"type": "string"}, "message": {"type": "string"}}},
            "retryable": {"type": "boolean", "default": True},
            "retry_after": {"type": ["number", "null"], "minimum": 0},
        },
    },
    "Finished": {"type": "object", "properties": {"status": {"enum": ["done", "retrying", "stale"]}}},
    "Call": {
        "type": "object",
        "properties": {"key": {"type": "string"}, "program": {"type": "string"}, "kind": {"type": "string"},
                       "name": {"type": "string"}, "payload": ANY,
                       "status": {"enum": ["pending", "claimed", "done", "failed", "cancelled"]},
                       "attempts": {"type": "integer"}, "next_at": {"type": ["number", "null"]},
                       "outcome": ANY, "last_error": ANY, "created_at": {"type": "number"},
                       "updated_at": {"type": "number"}},
    },
    "CallList": {"type": "object", "properties": {"calls": {"type": "array", "items": _ref("Call")}}},
    "Status": {"type": "object", "properties": {"status": {"type": "string"}}},
}

_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]


def _op(summary: str, responses: dict[str, Schema], *, parameters: list[Schema] | None = None,
        body: Schema | None = None, public: bool = False, errors: tuple[int, ...] = ()) -> Schema:
    op: Schema = {"summary": summary, "responses": {**responses, **_errors(*((() if public else (401,)) + errors))}}
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = body
    if public:
        op["security"] = []  # no bearer token, even when the server has one
    return op


PATHS: dict[str, dict[str, Schema]] = {
    "/programs": {
        "post": _op("Start a program", {
            "201": _json(_ref("Program"), "created"),
            "200": _json(_ref("Program"), "a program with this id, source and args already exists"),
        }, body=_body(_ref("StartProgram")), errors=(400, 409, 413, 422)),
        "get": _op("List programs, a page at a time", {"200": _json(_ref("ProgramList"), "a page of programs")},
                   parameters=[
                       _query("status", {"type": "string"}, "only programs with one of these statuses (comma-separated)"),
                       _query("file", {"type": "string"}, "only programs whose file name contains this text"),
                       _query("created_since", {"type": "string"}, "created at or after (ISO-8601 or epoch seconds)"),
                       _query("created_before", {"type": "string"}, "created before (ISO-8601 or epoch seconds)"),
                       _query("order", {"enum": ["asc", "desc"], "default": "asc"}, "by creation time"),
                       _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                              "at most this many programs"),
                       _query("cursor", {"type": "string"}, "`next_cursor` of the previous page")],
                   errors=(422,)),
    },
    "/programs/{id}": {
        "get": _op("A program's status", {"200": _json(_ref("Program"), "the program")},
                   parameters=[PROGRAM_ID], errors=(404,)),
    },
    "/programs/{id}/result": {
        "get": _op("A program's result, waiting for it to finish", {
            "200": _json(_ref("Outcome"), "finished: `result` if completed, else `error`"),
            "202": _json(_ref("Outcome"), "still running after the wait"),
        }, parameters=[PROGRAM_ID, _query("wait", {"type": "number", "minimum": 0, "default": 0},
                                          "long-poll up to this many seconds (at most 60)")],
            errors=(404, 422)),
    },
    "/programs/{id}/history": {
        "get": _op("A program's events", {"200": _json(_ref("History"), "events after `after`, in order")},
                   parameters=[PROGRAM_ID,
                               _query("after", {"type": "integer", "minimum": 0, "default": 0},
                                      "only events with a larger sequence number"),
                               _query("limit", {"type": "integer", "minimum": 1, "default": 1000},
                                      "at most this many events")],
                   errors=(404, 422)),
    },
    "/programs/{id}/state": {
        "get": _op("A program's state at an event: tasks, stacks, variables, waits",
                   {"200": _json(_ref("State"), "the state")},
                   parameters=[PROGRAM_ID, _query("at", {"type": "integer", "minimum": 1},
                                                  "the event number (default: the latest)")],
                   errors=(404, 422)),
    },
    "/programs/{id}/messages": {
        "post": _op("Send a message to a program", {"202": _json(_ref("Accepted"), "queued")},
                    parameters=[PROGRAM_ID], body=_body(_ref("Message")), errors=(400, 404, 409, 413, 422)),
    },
    "/programs/{id}/cancel": {
        "post": _op("Cancel a program (`Cancelled` is raised at its current wait)",
                    {"202": _json(_ref("Accepted"), "cancellation requested")},
                    parameters=[PROGRAM_ID], errors=(404, 409)),
    },
    "/programs/{id}/calls": {
        "get": _op("The calls a program made", {"200": _json(_ref("CallList"), "calls, oldest first")},
                   parameters=[PROGRAM_ID], errors=(404,)),
    },
    "/functions/claim": {
        "post": _op("Claim due function calls (long-poll)",
                    {"200": _json(_ref("Claimed"), "the claimed attempts (empty after the wait)")},
                    body=_body(_ref("Claim")), errors=(400, 413, 422)),
    },
    "/functions/calls/{key}": {
        "get": _op("A call", {"200": _json(_ref("Call"), "the call")}, parameters=[CALL_KEY], errors=(404,)),
    },
    "/functions/calls/{key}/heartbeat": {
        "post": _op("Extend an attempt's lease",
                    {"200": _json({"type": "object", "properties": {"ok": {"type": "boolean"}}},
                                  "ok: false if the attempt is no longer this worker's")},
                    parameters=[CALL_KEY], body=_body(_ref("Heartbeat")), errors=(400, 404, 413, 422)),
    },
    "/functions/calls/{key}/complete": {
        "post": _op("Report an attempt's result", {"200": _json(_ref("Finished"), "done, or stale if ignored")},
                    parameters=[CALL_KEY], body=_body(_ref("Complete")), errors=(400, 404, 413, 422)),
    },
    "/functions/calls/{key}/fail": {
        "post": _op("Report an attempt's failure",
                    {"200": _json(_ref("Finished"), "done (delivered), retrying, or stale if ignored")},
                    parameters=[CALL_KEY], body=_body(_ref("Fail")), errors=(400, 404, 413, 422)),
    },
    "/callbacks/{token}": {
        method: _op("Deliver the one request a callback accepts (any body; persisted before the answer)",
                    {"202": _json(_ref("Status"), "accepted")},
                    parameters=[_path("token", "the callback's token")],
                    body={"required": False, "content": {"*/*": {"schema": {}}}},
                    public=True, errors=(404, 409, 413))
        for method in ("post", "put", "patch")
    },
    "/health": {
        "get": _op("The server process is alive", {"200": _json(_ref("Status"), "alive")}, public=True),
    },
    "/ready": {
        "get": _op("The store is reachable", {"200": _json(_ref("Status"), "ready")}, errors=(503,)),
    },
    "/openapi.json": {
        "get": _op("This document", {"200": _json({"type": "object"}, "the OpenAPI 3.1 document")}),
    },
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Flowmetal", "version": __version__,
                 "description": "Start and drive durable programs; serve their foreign functions and callbacks. "
                                "Errors are `{\"error\": {\"type\", \"message\"}}`."},
        "paths": PATHS,
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": _AUTH,
    }
