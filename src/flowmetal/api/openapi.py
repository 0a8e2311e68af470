"""The OpenAPI 3.1 document of the HTTP API, generated from the operations table
(`api/operations.py`) and the types the routes validate with (`api/types.py`): what
the document allows is exactly what the server accepts. It describes the server as
configured: the bearer token is required only when the server has one."""

from __future__ import annotations

from typing import Any

import msgspec

from flowmetal import __version__
from flowmetal.api import types
from flowmetal.api.operations import Operation, Operations

Schema = dict[str, Any]
_REF = "#/components/schemas/{name}"

_REASONS = {
    400: "malformed JSON or request",
    401: "missing or wrong bearer token",
    404: "no such program, call or callback",
    409: "conflicts with the current state",
    410: "gone: the program behind it has ended",
    413: "the request body is too large",
    422: "a field is missing or has the wrong type; or the program does not pass checking",
    503: "the store is unreachable (or, for /state, the program's replay could not finish)",
}
_PATH_PARAMS = {
    "id": "the program's id",
    "key": "the call's key `PROGRAM:SEQ` (the ':' may be URL-encoded)",
    "token": "the callback's token",
    "name": "the deployment's, schedule's or hook's name",
}


def _ref(t: type) -> Schema:
    return {"$ref": _REF.format(name=t.__name__)}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _parameters(op: Operation) -> list[Schema]:
    params: list[Schema] = []
    for part in op.path.split("/"):
        if part.startswith("{"):
            name = part.strip("{}")
            params.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"},
                           "description": _PATH_PARAMS[name]})
    if op.query is not None:
        _, defs = msgspec.json.schema_components([op.query], ref_template=_REF)
        schema = defs[op.query.__name__]
        for name, prop in schema["properties"].items():
            prop = dict(prop)
            description = prop.pop("description", None)
            param: Schema = {"name": name, "in": "query", "required": name in schema.get("required", ()),
                             "schema": prop}
            if description:
                param["description"] = description
            params.append(param)
    return params


def _operation(op: Operation, secured: bool) -> Schema:
    responses: Schema = {}
    for status, (kind, description) in sorted(op.responses.items()):
        if op.html and status == 200:
            responses[str(status)] = {"description": description,
                                      "content": {"text/html": {"schema": {"type": "string"}}}}
        elif kind is None:
            responses[str(status)] = {"description": description}
        else:
            responses[str(status)] = _json(_ref(kind), description)
    errors = set(op.errors)
    if secured and not op.public:
        errors.add(401)
    if op.body or op.raw_body:
        errors.update((400, 413))
    for status in sorted(errors):
        if op.html and status in op.errors:  # a page for people: its errors are pages too
            responses[str(status)] = {"description": _REASONS[status],
                                      "content": {"text/html": {"schema": {"type": "string"}}}}
        else:
            responses[str(status)] = _json(_ref(types.Error), _REASONS[status])
    out: Schema = {"summary": op.summary, "operationId": f"{op.method.lower()}_{_slug(op.path)}",
                   "responses": responses}
    if op.description:
        out["description"] = op.description
    params = _parameters(op)
    if params:
        out["parameters"] = params
    if op.body:
        schema = _ref(op.body[0]) if len(op.body) == 1 else {"anyOf": [_ref(t) for t in op.body]}
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    elif op.raw_body:
        out["requestBody"] = {"required": False, "content": {"*/*": {"schema": {}}}}
    if op.public or not secured:
        out["security"] = []
    return out


def _slug(path: str) -> str:
    return "_".join(p.strip("{}") for p in path.split("/") if p) or "root"


def document(ops: Operations, *, secured: bool) -> Schema:
    kinds: list[type] = [types.Error]
    for op in ops.items:
        kinds.extend(op.body)
        kinds.extend(k for k, _ in op.responses.values() if k is not None)
    _, components = msgspec.json.schema_components(list(dict.fromkeys(kinds)), ref_template=_REF)
    paths: dict[str, Schema] = {}
    for op in ops.items:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, secured)
    doc: Schema = {
        "openapi": "3.1.0",
        "info": {"title": "Flowmetal", "version": __version__,
                 "description": "Start and drive durable programs; serve their foreign functions and callbacks. "
                                "Errors are `{\"error\": {\"type\", \"message\"}}`."},
        "paths": paths,
        "components": {"schemas": components},
    }
    if secured:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc
