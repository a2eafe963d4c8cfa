"""API models -> CustomResourceDefinitions (apiextensions.k8s.io/v1), like controller-gen.

Pydantic's JSON Schema is turned into a structural schema: $refs inlined, Optional unwrapped,
int|str as x-kubernetes-int-or-string, free-form objects as x-kubernetes-preserve-unknown-fields.
`python -m vlmop.operator.crdgen [DIR]` writes crds/*.yaml; a test fails when they are stale.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from vlmop.operator.api import GROUP, KINDS, VERSION, KindInfo
from vlmop.operator.api.common import cel

Schema = dict[str, Any]
_DROP = {"title", "$defs"}


def structural(node: Schema, defs: dict[str, Schema]) -> Schema:
    """One pydantic JSON Schema node -> a Kubernetes structural schema node."""
    node = dict(node)
    for key in _DROP:
        node.pop(key, None)
    if "$ref" in node:  # siblings (description, default) win over the referenced definition
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**structural(target, defs), **node}
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        types = sorted(o.get("type", "") for o in options)
        if types == ["integer", "string"]:
            node["x-kubernetes-int-or-string"] = True
        elif len(options) == 1:
            node = {**structural(options[0], defs), **node}
        else:
            raise ValueError(f"cannot express anyOf {options} in a structural schema")
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, name in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node[bound], bool):
            node[name], node[bound] = node[bound], True  # OpenAPI v3.0 spells it as a flag
    if "properties" in node:
        node["properties"] = {k: structural(v, defs) for k, v in node["properties"].items()}
        node.pop("additionalProperties", None)  # unknown fields are pruned by the API server
    elif node.get("type") == "object":
        extra = node.pop("additionalProperties", True)
        if extra is True or extra == {}:
            node["x-kubernetes-preserve-unknown-fields"] = True
        else:
            node["additionalProperties"] = structural(extra, defs)
    if "items" in node:
        node["items"] = structural(node["items"], defs)
    if "default" in node and node["default"] is None:  # Optional fields: absent, not null
        del node["default"]
    return node


def kind_schema(info: KindInfo) -> Schema:
    """The openAPIV3Schema of one kind: apiVersion/kind/metadata + spec + status."""

    def model_schema(model: Any, description: str) -> Schema:
        raw = model.model_json_schema(by_alias=True, mode="validation", ref_template="#/$defs/{model}")
        return {**structural(raw, raw.get("$defs", {})), "description": description}

    return {
        "type": "object",
        "description": info.description,
        "required": ["spec"],
        "x-kubernetes-validations": [
            cel(
                f"size(self.metadata.name) <= {info.max_name_length}",
                f"metadata.name may have at most {info.max_name_length} characters: children and pod "
                "hostnames are named after it",
                ".metadata.name",
            )
        ],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            # name declared so that the rule above can point at it (CRDs may constrain name only)
            "metadata": {
                "type": "object",
                "description": "Standard object metadata.",
                "properties": {"name": {"type": "string", "description": "The object's name."}},
            },
            "spec": model_schema(info.spec, f"Desired state of the {info.kind}."),
            "status": model_schema(info.status, f"Observed state of the {info.kind}, written by vlmop."),
        },
    }


def crd(info: KindInfo) -> Schema:
    columns = [
        {"name": name, "type": typ, "jsonPath": path, "description": f"{name} of the {info.kind}."}
        for name, typ, path in info.printer_columns
    ]
    columns.append({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": info.crd_name, "labels": {"app.kubernetes.io/part-of": "vlmop"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": [info.short_name],
                "categories": ["vlmop"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": kind_schema(info)},
                }
            ],
        },
    }


def render(info: KindInfo) -> str:
    header = "# Generated by `python -m vlmop.operator.crdgen` from operator/api/. Do not edit.\n"
    return header + yaml.safe_dump(crd(info), sort_keys=False, width=100)


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for info in KINDS:
        path = directory / f"{info.crd_name}.yaml"
        path.write_text(render(info))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    for path in write(Path(args[0] if args else "crds")):
        print(path)


if __name__ == "__main__":
    main()
