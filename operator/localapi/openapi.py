"""OpenAPI documents built from the installed CRDs' schemas, as kube-apiserver publishes them.

v3 (/openapi/v3 and /openapi/v3/apis/<group>/<version>) is what kubectl reads: `kubectl explain`
renders a kind's schema from it, and `kubectl apply`/`create` look for the fieldValidation
parameter on a kind's PATCH operation to leave the validation to the server (which then checks
unknown fields, see fieldvalidation.py); without it kubectl validates on its own, from OpenAPI v2
in protobuf. Built-in kinds get documents from the kubernetes client's models (models.py).
v2 is served as JSON only (kubectl asks for protobuf, and only where v3 falls short).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from vlmop.operator.localapi import models
from vlmop.operator.localapi.discovery import Kind

Doc = dict[str, Any]

_WRITE_PARAMETERS = [
    {
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": "string", "uniqueItems": True},
    }
    for name, description in (
        ("dryRun", "All: validate and admit the write, but store nothing."),
        ("fieldManager", "The name of the actor or entity that is making these changes."),
        ("fieldValidation", "Ignore, Warn (default) or Strict: what to do with unknown fields."),
    )
]


def schema_name(group: str, version: str, kind: str) -> str:
    """kube-apiserver's definition names: io.vlmop.v1alpha1.PretrainJob (reversed group)."""
    return ".".join([*reversed(group.split(".")), version, kind])


def _ref(name: str) -> Doc:
    return {"$ref": f"#/components/schemas/{name}"}


def _operation(action: str, gvk: Doc, schema: str, parameters: list[Doc] | None = None) -> Doc:
    content = {"application/json": {"schema": _ref(schema)}}
    operation: Doc = {
        "operationId": f"{action}{gvk['kind']}",
        "responses": {"200": {"description": "OK", "content": content}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    }
    if parameters:
        operation["parameters"] = parameters
    if action in ("put", "patch"):
        operation["requestBody"] = {"content": {"*/*": {"schema": _ref(schema)}}, "required": True}
    return operation


def _paths(
    prefix: str, plural: str, namespaced: bool, gvk: Doc, schema: str, subresources: Iterable[str]
) -> Doc:
    collection = f"{prefix}{'/namespaces/{namespace}' if namespaced else ''}/{plural}"
    item = {
        "get": _operation("get", gvk, schema),
        "put": _operation("put", gvk, schema, _WRITE_PARAMETERS),
        "patch": _operation("patch", gvk, schema, _WRITE_PARAMETERS),
    }
    paths = {
        collection: {
            "get": _operation("list", gvk, f"{schema}List"),
            "post": _operation("post", gvk, schema),
        },
        f"{collection}/{{name}}": item,
    }
    paths.update({f"{collection}/{{name}}/{sub}": item for sub in subresources if sub == "status"})
    return paths


def _list_schema(gvk: Doc, item: str) -> Doc:
    return {
        "type": "object",
        "description": f"{gvk['kind']}List is a list of {gvk['kind']}.",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "items": {"type": "array", "items": _ref(item)},
        },
        "x-kubernetes-group-version-kind": [{**gvk, "kind": f"{gvk['kind']}List"}],
    }


def crd_document(crds: Iterable[Doc], group: str, version: str) -> Doc:
    """The v3 document of one group version, from the CRDs that serve it."""
    paths: Doc = {}
    schemas: Doc = {}
    for crd in crds:
        spec = crd["spec"]
        for served in spec["versions"]:
            if spec["group"] != group or served["name"] != version or not served.get("served", True):
                continue
            gvk = {"group": group, "version": version, "kind": spec["names"]["kind"]}
            name = schema_name(group, version, gvk["kind"])
            schema = (served.get("schema") or {}).get("openAPIV3Schema") or {"type": "object"}
            schemas[name] = {**schema, "x-kubernetes-group-version-kind": [gvk]}
            schemas[f"{name}List"] = _list_schema(gvk, name)
            namespaced = spec.get("scope") == "Namespaced"
            paths.update(
                _paths(f"/apis/{group}/{version}", spec["names"]["plural"], namespaced, gvk, name,
                       served.get("subresources") or {})
            )  # fmt: skip
    return _document(paths, schemas, "Kubernetes CRD Swagger")


@functools.cache
def builtin_document(group: str, version: str, kinds: tuple[Kind, ...]) -> Doc:
    """The v3 document of a built-in group version: (plural, kind, namespaced, subresources) each,
    its schemas from the kubernetes client's models (preserving unknown fields where it has none)."""
    paths: Doc = {}
    schemas: Doc = {}
    for plural, kind, namespaced, subresources in kinds:
        gvk = {"group": group, "version": version, "kind": kind}
        model = models.builtin_model(group, version, kind)
        name = (
            models.add_schemas(model.__name__, schemas)
            if model
            else schema_name(group or "core", version, kind)
        )
        schema = schemas.get(name) or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        schemas[name] = {**schema, "x-kubernetes-group-version-kind": [gvk]}
        schemas[f"{name}List"] = _list_schema(gvk, name)
        prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
        paths.update(_paths(prefix, plural, namespaced, gvk, name, subresources))
    return _document(paths, schemas, "Kubernetes")


def _document(paths: Doc, schemas: Doc, title: str) -> Doc:
    return {"openapi": "3.0.0", "info": {"title": title, "version": "v1.37.0"}, "paths": paths,
            "components": {"schemas": schemas}}  # fmt: skip


def gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def index(hashes: dict[str, str]) -> Doc:
    """/openapi/v3: each group version's document, its URL carrying a hash of its content."""
    return {
        "paths": {
            path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
            for path, digest in sorted(hashes.items())
        }
    }


def digest(content: Any) -> str:
    return hashlib.sha512(json.dumps(content, sort_keys=True).encode()).hexdigest()[:32].upper()


def swagger(documents: Iterable[Doc]) -> Doc:
    """OpenAPI v2 (JSON) with the same definitions."""
    definitions: Doc = {}
    for doc in documents:
        definitions.update(doc["components"]["schemas"])
    text = json.dumps(definitions).replace("#/components/schemas/", "#/definitions/")
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.37.0"}, "paths": {},
            "definitions": json.loads(text)}  # fmt: skip
