"""A stateful Kubernetes API server for loopback: kmock's KubernetesEmulator with its 0.8 gaps filled.

Filled here: uid, resourceVersion (one counter, as etcd's revision), generation (bumped on changes
outside metadata and status), creationTimestamp, generateName, 201 on create, PUT with optimistic
concurrency, the status subresource, label/field selectors on list and watch, watch from a
resourceVersion (410 Gone once it has left the history), CRDs registering their resources when
created, admission of custom objects against the CRD schema (prune, default, validate, CEL), finalizers,
and ownerReference garbage collection (background and orphan propagation).

What kubectl 1.37 asks of a server, this one routes to pure builders: discovery, legacy and
aggregated (discovery.py); meta.k8s.io Tables with the CRDs' printer columns, for get, list and
watch (tables.py); OpenAPI v3 from the CRDs' schemas and the client's models of the built-in kinds
(openapi.py, models.py); ?fieldValidation= Strict/Warn/Ignore (fieldvalidation.py); strategic merge
patches of built-in kinds, directives included (patches.py); the field selectors of events and pods
(fieldselectors.py); ?dryRun=All; streaming lists (WatchList: sendInitialEvents and its closing
bookmark); watches as application/json; pod logs with tailLines, limitBytes and follow (the log has
no timestamps: asked to filter by time, it serves all of it with a Warning saying so). Server-side
apply creates missing objects and merges into existing ones, with a Warning saying what it does not
track.

Refused, clearly, where it cannot do what kube-apiserver does: protobuf and CBOR bodies (415; kubectl's
typed `create <kind>` commands send protobuf, `kubectl create -f`/`apply -f` send JSON), responses
other than JSON or Tables (406: OpenAPI v2 as protobuf, objects as protobuf), strategic merge patches
of custom resources (415, as in kube-apiserver), subresources other than status and pods' log
(404: exec, attach, port-forward, scale, ...), logs of previous containers (400). What it still
cannot prove, so e2e/ on a real cluster does: server-side apply field ownership (managedFields,
conflicts, removal of dropped fields), deletecollection, admission webhooks, RBAC, quota, and any
controller (no Job or Deployment controller runs: tests, or the local kubelet, set pod phases).
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime
import functools
import random
import string
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import apps, dicts, references, rendering

from vlmop.operator.localapi import discovery, fieldvalidation, media, models, openapi, tables
from vlmop.operator.localapi.admission import StructuralSchema
from vlmop.operator.localapi.fieldselectors import kind_field_selector
from vlmop.operator.localapi.patches import UnsupportedPatch, strategic_merge
from vlmop.operator.localapi.selectors import SelectorError, label_selector

Obj = dict[str, Any]
Key = tuple[references.resource, str | None, str]
HISTORY = 20000  # watch events kept per resource; older resourceVersions get 410 Gone
CRDS = references.resource(group="apiextensions.k8s.io", version="v1", plural="customresourcedefinitions")
VERSION = {"major": "1", "minor": "37", "gitVersion": "v1.37.0-vlmop.local", "platform": "linux/amd64"}
LOG_POLL = 0.2  # seconds between looks at a followed pod log
APPLY_WARNING = (
    "server-side apply on the local API server merges the applied fields into the object: field "
    "ownership (managedFields, conflicts, removing fields a manager stopped applying) is not tracked"
)


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details or {})


def _unsupported(accepted: set[str], note: str = "") -> kmock.KubernetesError:
    return _error(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(sorted(accepted))}{note}",
    )


def _warning_header(warnings: list[str]) -> dict[str, str]:
    """The Warning header kube-apiserver sends (299, one quoted text each); kubectl prints them."""
    quoted = [w.replace("\\", "\\\\").replace('"', '\\"') for w in warnings]
    return {"Warning": ", ".join(f'299 - "{w}"' for w in quoted)} if warnings else {}


@attrs.define(kw_only=True)
class Fault:
    """A fault the server injects into the next `times` matching requests, before serving them (a
    refused write changes nothing): an error status (409 conflict, 429 with Retry-After, 500, 503),
    or, on a watch, `status` 410 (an ERROR event: resourceVersion expired) or 0 (the stream drops)."""

    status: int
    method: str | None = None  # GET, POST, PATCH, DELETE; None: any
    plural: str | None = None  # e.g. "jobs"; None: any resource
    subresource: str | None = None  # e.g. "status"
    watch: bool = False
    times: int = 1
    retry_after: int | None = None

    def matches(self, request: rendering.Request) -> bool:
        resource = request.resource
        return (
            self.times > 0
            and (self.method is None or request.method.value == self.method)
            and (self.plural is None or (resource is not None and resource.plural == self.plural))
            and (self.subresource is None or request.subresource == self.subresource)
            and (request.action == kmock.action.WATCH) == self.watch
        )


@attrs.define(kw_only=True)
class LocalAPIServer(kmock.KubernetesEmulator):
    _revision: int = attrs.field(default=0, init=False)
    _schemas: dict[references.resource, StructuralSchema] = attrs.field(factory=dict, init=False)
    _columns: dict[references.resource, list[tables.Column]] = attrs.field(factory=dict, init=False)
    _history: dict[references.resource, collections.deque[tuple[int, Obj]]] = attrs.field(
        factory=lambda: collections.defaultdict(lambda: collections.deque(maxlen=HISTORY)), init=False
    )
    _floor: dict[references.resource, int] = attrs.field(factory=dict, init=False)
    _watchers: dict[references.resource, set[asyncio.Queue[Obj]]] = attrs.field(
        factory=lambda: collections.defaultdict(set), init=False
    )
    _answers: dict[int, rendering.Response] = attrs.field(factory=dict, init=False)
    _builtin_reactions: int = attrs.field(default=0, init=False)
    _dry_run: bool = attrs.field(default=False, init=False)  # set during a ?dryRun=All write
    # Where the local kubelet writes each pod's output (<dir>/<pod>/log): serves GET pods/<name>/log.
    pod_logs: Path | None = attrs.field(default=None, init=False)
    # Faults to inject (tests of retries and recovery); each is used up after `times` requests.
    faults: list[Fault] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources.load_bundled()  # built-in kinds (pods, jobs, events, CRDs, ...) of a recent K3s
        for method in (kmock.method.PUT, kmock.method.DELETE):  # kmock 0.8 routes no PUT, no DELETE-all
            self.fallback[method] << self._serve_answer
        self._builtin_reactions = len(self._payloads)

    # ---- routing -------------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Bodies that are not text (protobuf, CBOR) are refused before kmock tries to read them."""
        if raw_request.body_exists and media.content_type(raw_request.headers) not in media.READABLE:
            return await self._render_error(
                _unsupported(media.OBJECTS, " (the local API server reads no protobuf)")
            )
        return await super().__call__(raw_request)

    async def _handle(self, request: rendering.Request) -> Any:
        fault = next((f for f in self.faults if f.matches(request)), None)
        if fault is not None:
            fault.times -= 1
            return await self._inject(fault)(request)
        if request.method.value == "GET" and (meta := self._serve_meta(request)) is not None:
            return await meta(request)
        if (
            request.subresource == "log"
            and request.resource is not None
            and request.resource.plural == "pods"
        ):
            return await self._pod_log(request)(request)
        representation = "json"
        if request.resource is not None and request.resource.plural:
            if request.subresource not in (None, "status"):  # exec, attach, port-forward, scale, ...
                where = f"{request.resource.plural}/{request.subresource}"
                raise _error(404, "NotFound", f"the local API server does not serve {where}")
            representation = self._negotiate(request)
        if request.resource is not None and request.method.value in ("POST", "PUT", "PATCH", "DELETE"):
            async with self._lock:
                self._answers[request.id] = self._write(request)
        try:
            if request.resource is not None and request.resource.plural and not self._user_reactions():
                return await self._read(request, representation)(request)
            # Skip KubernetesEmulator._handle (its own, simpler writes). User reactions still answer
            # first, but after the write: a reaction injecting a 500 does not undo the change.
            return await apps.RawHandler._handle(self, request)
        finally:
            self._answers.pop(request.id, None)

    @staticmethod
    def _inject(fault: Fault) -> rendering.Response:
        if fault.watch:

            async def stream() -> AsyncIterator[rendering.Payload]:
                yield b""
                if fault.status == 410:
                    gone = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                            "reason": "Expired", "message": "too old resource version"}  # fmt: skip
                    yield {"type": "ERROR", "object": gone}
                # status 0: the stream just ends, as a dropped connection does

            return rendering.Response(payload=stream())
        reasons = {409: "Conflict", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}
        body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": fault.status,
                "reason": reasons.get(fault.status, "Unknown"), "message": "injected fault"}  # fmt: skip
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        return rendering.Response(status=fault.status, payload=body, headers=headers)

    # ---- discovery, OpenAPI, version ------------------------------------------------------------

    def _resources_served(self) -> discovery.Resources:
        return {resource: self.resources[resource] for resource in self.resources}

    def _serve_meta(self, request: rendering.Request) -> rendering.Response | None:
        """Discovery and OpenAPI documents (None: not such a path)."""
        parts = request.url.path.strip("/").split("/")
        resources = self._resources_served()
        accept = media.header(request.headers, "Accept")
        if parts == ["version"]:
            return rendering.Response(payload=VERSION)
        if (parts[0] == "api" and len(parts) <= 2) or (parts[0] == "apis" and len(parts) <= 3):
            representation = media.first_known(accept, media.DISCOVERY_OFFERS)
            if representation is None:
                raise _error(406, "NotAcceptable", f"discovery is served as JSON, not as {accept}")
            if representation == "aggregated" and len(parts) == 1:
                doc = discovery.aggregated(resources, core=parts == ["api"])
                return rendering.Response(payload=doc, headers={"Content-Type": media.AGGREGATED})
            return rendering.Response(payload=self._legacy_discovery(resources, parts))
        if parts[:2] == ["openapi", "v3"]:
            documents = self._openapi_documents()
            if len(parts) == 2:
                return rendering.Response(payload=openapi.index({p: h for p, (h, _) in documents.items()}))
            if "/".join(parts[2:]) not in documents:
                raise _error(404, "NotFound", f"no OpenAPI v3 document for {'/'.join(parts[2:])}")
            return rendering.Response(payload=documents["/".join(parts[2:])][1]())
        if parts == ["openapi", "v2"]:
            if media.first_known(accept, {"json": (media.JSON, {})}) is None:
                raise _error(406, "NotAcceptable", f"OpenAPI v2 is served as JSON only, not as {accept}; "
                             "the documents are complete in OpenAPI v3 (/openapi/v3)")  # fmt: skip
            built = [build() for _, build in self._openapi_documents().values()]
            return rendering.Response(payload=openapi.swagger(built))
        return None

    @staticmethod
    def _legacy_discovery(resources: discovery.Resources, parts: list[str]) -> Any:
        if parts == ["api"]:
            return discovery.api_versions()
        if parts == ["apis"]:
            return discovery.group_list(resources)
        if parts[0] == "apis" and len(parts) == 2:
            found = discovery.find_group(resources, parts[1])
        else:
            group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
            found = discovery.resource_list(resources, group, version)
        if found is None:
            raise _error(
                404, "NotFound", f"the server could not find the requested resource /{'/'.join(parts)}"
            )
        return found

    def _openapi_documents(self) -> dict[str, tuple[str, Callable[[], openapi.Doc]]]:
        """Each group version's OpenAPI v3 path -> (the hash of its content, how to build it)."""
        crds = [obj for key, obj in self._live().items() if key[0] == CRDS]
        custom = {(crd["spec"]["group"], v["name"]) for crd in crds for v in crd["spec"]["versions"]}
        resources = self._resources_served()
        documents: dict[str, tuple[str, Callable[[], openapi.Doc]]] = {}
        for group, version in discovery.group_versions(resources):
            if (group, version) in custom:
                doc = openapi.crd_document(crds, group, version)
                documents[openapi.gv_path(group, version)] = (
                    openapi.digest(doc),
                    functools.partial(dict, doc),
                )
            else:  # built-in kinds: built when asked for (and cached), hashed by what they serve
                kinds = discovery.kinds(resources, group, version)
                build = functools.partial(openapi.builtin_document, group, version, kinds)
                documents[openapi.gv_path(group, version)] = (openapi.digest(kinds), build)
        return documents

    # ---- pod logs ------------------------------------------------------------------------------

    def _pod_log(self, request: rendering.Request) -> rendering.Response:
        """The log the local kubelet wrote: all of it, its last tailLines, its first limitBytes, or
        followed (follow=true) until the pod ends or goes away. The log has no timestamps: asked to
        filter by time or to add timestamps, the server says so in a Warning and serves it all."""
        key = (self._known(request), request.namespace, request.name or "")
        self._get(key)  # 404: unknown pod
        if request.params.get("previous", "false") != "false":
            raise _error(400, "BadRequest", "the local API server keeps no log of previous containers")
        untimed = [
            p
            for p in ("sinceSeconds", "sinceTime", "timestamps")
            if request.params.get(p, "false") != "false"
        ]
        warnings = [f"{', '.join(untimed)}: the local kubelet's log has no timestamps, all of it is served"]
        path = self.pod_logs / str(request.name) / "log" if self.pod_logs else None
        text = path.read_bytes() if path and path.exists() else b""
        offset = len(text)
        if request.params.get("tailLines"):
            text = b"".join(text.splitlines(keepends=True)[-int(request.params["tailLines"]) :])
        limit = int(request.params["limitBytes"]) if request.params.get("limitBytes") else None
        text = text[:limit]
        payload: Any = text
        if request.params.get("follow") == "true" and (limit is None or len(text) < limit):
            payload = self._follow_log(key, path, text, offset, None if limit is None else limit - len(text))
        headers = {"Content-Type": "text/plain", **(_warning_header(warnings) if untimed else {})}
        return rendering.Response(payload=payload, headers=headers)

    async def _follow_log(
        self, key: Key, path: Path | None, start: bytes, offset: int, left: int | None
    ) -> AsyncIterator[bytes]:
        yield start
        while left is None or left > 0:
            obj = self._objects[key].raw if key in self._objects and not self._objects[key].deleted else None
            ended = obj is None or (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed")
            if path is not None and path.exists() and path.stat().st_size > offset:
                with path.open("rb") as log:
                    log.seek(offset)
                    chunk = log.read(left if left is not None else -1)
                offset += len(chunk)
                left = None if left is None else left - len(chunk)
                yield chunk
            elif ended:
                return
            await asyncio.sleep(LOG_POLL)

    def _user_reactions(self) -> bool:
        # kmock matches a request against each reaction by re-filtering its whole request log:
        # O(requests) per request. Without reactions of the tests' own, serve resources directly.
        return len(self._payloads) > self._builtin_reactions

    @staticmethod
    def _negotiate(request: rendering.Request) -> str:
        """ "json", "table" or "table-v1beta1", from the Accept header; 406 for anything else."""
        accept = media.header(request.headers, "Accept")
        representation = media.first_known(accept, media.OBJECT_OFFERS)
        if representation is None:
            raise _error(
                406, "NotAcceptable", f"the local API server serves JSON and meta.k8s.io Tables, not {accept}"
            )
        return representation

    def _read(self, request: rendering.Request, representation: str) -> rendering.Response:
        watch = request.action == kmock.action.WATCH
        readers = {
            kmock.action.LIST: self._serve_list,
            kmock.action.WATCH: self._serve_watch,
            kmock.action.FETCH: self._serve_fetch,
        }
        if representation == "json" or request.action not in readers:  # writes answer with the object
            payload: Any = readers.get(request.action, self._serve_answer)(request)  # type: ignore[arg-type]
            return rendering.Response(
                payload=payload, headers={"Content-Type": media.JSON} if watch else None
            )
        version = "v1beta1" if representation.endswith("v1beta1") else "v1"
        headers = {
            "Content-Type": media.JSON if watch else f"{media.JSON};as=Table;v={version};g=meta.k8s.io"
        }
        return rendering.Response(payload=self._serve_table(request, version), headers=headers)

    async def _serve_table(self, request: rendering.Request, version: str) -> rendering.Payload:
        resource = self._known(request)
        builtin = tables.BUILTIN_COLUMNS.get((resource.group or "", resource.plural or ""))
        columns = self._columns.get(resource) or builtin or [tables.NAME, tables.AGE]
        include = request.params.get("includeObject", "Metadata")
        if request.action == kmock.action.WATCH:
            return self._watch_tables(request, columns, include, version)
        listed = await (self._serve_fetch if request.action == kmock.action.FETCH else self._serve_list)(
            request
        )
        assert isinstance(listed, dict)
        if request.action == kmock.action.FETCH:
            return tables.table([listed], columns, None, include, version=version)
        rv = listed["metadata"]["resourceVersion"]
        return tables.table(listed["items"], columns, rv, include, version=version)

    async def _watch_tables(
        self, request: rendering.Request, columns: list[tables.Column], include: str, version: str
    ) -> AsyncIterator[rendering.Payload]:
        """A watch whose objects are one-row Tables, the column definitions in the first only."""
        first = True
        async for event in self._serve_watch(request):
            if isinstance(event, dict) and event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                rv = event["object"]["metadata"].get("resourceVersion")
                row = tables.table([event["object"]], columns, rv, include, headers=first, version=version)
                event, first = {"type": event["type"], "object": row}, False
            yield event

    async def _serve_answer(self, request: rendering.Request) -> rendering.Response:
        return self._answers[request.id]

    _serve_create = _serve_update = _serve_delete = _serve_answer  # kmock's fallbacks bind these names

    def _write(self, request: rendering.Request) -> rendering.Response:
        """A write; with ?dryRun=All, everything but storing it (admission and validation included)."""
        if request.params.get("dryRun", "All") != "All":
            raise _error(400, "BadRequest", f'dryRun: Unsupported value: "{request.params["dryRun"]}"')
        options = request.data if request.method.value == "DELETE" and isinstance(request.data, dict) else {}
        self._dry_run = "dryRun" in request.params or "All" in (options.get("dryRun") or [])  # DeleteOptions
        try:
            return self._write_now(request)
        finally:
            self._dry_run = False

    def _write_now(self, request: rendering.Request) -> rendering.Response:
        resource = self._known(request)
        request = self._decoded(request, resource)
        warnings = [APPLY_WARNING] if self._is_apply(request) else []
        if request.method.value == "POST" and request.name is None:
            warnings += self._check_fields(resource, request, request.data)
            return self._answer(201, self._create(resource, request), warnings)
        if request.name is None:
            raise _error(405, "MethodNotAllowed", f"{request.method.value} needs an object name")
        key = (resource, request.namespace, request.name)
        if request.method.value == "DELETE":
            body = request.data if isinstance(request.data, dict) else {}
            policy = body.get("propagationPolicy") or request.params.get("propagationPolicy", "Background")
            return rendering.Response(status=200, payload=self._delete(key, policy))
        if self._is_apply(request) and (key not in self._objects or self._objects[key].deleted):
            warnings += self._check_fields(resource, request, request.data)
            return self._answer(201, self._create(resource, request), warnings)
        current = self._get(key)
        if request.method.value == "PUT":
            if not isinstance(request.data, dict):
                raise _error(400, "BadRequest", "the body must be a JSON object")
            new = request.data  # _update copies it
        else:
            new = self._patched(current, request)
        warnings += self._check_fields(resource, request, new)
        return self._answer(200, self._update(key, current, new, request), warnings)

    @staticmethod
    def _answer(status: int, obj: Obj, warnings: list[str]) -> rendering.Response:
        return rendering.Response(status=status, payload=obj, headers=_warning_header(warnings) or None)

    def _decoded(self, request: rendering.Request, resource: references.resource) -> rendering.Request:
        """The request with its body read (JSON or YAML); 415 for a body kube-apiserver would not
        take: a patch in no patch format, a strategic merge patch of a custom resource."""
        content_type = media.content_type(request.headers)
        if request.method.value == "PATCH":
            accepted = media.PATCHES - ({media.STRATEGIC} if resource in self._schemas else set())
        else:
            accepted = media.OBJECTS if request.method.value in ("POST", "PUT") else {content_type}
        if content_type not in accepted:
            raise _unsupported(accepted)
        if request.data is None and request.text.strip():
            try:
                return attrs.evolve(request, data=yaml.safe_load(request.text))
            except yaml.YAMLError as e:
                raise _error(400, "BadRequest", f"the body is neither JSON nor YAML: {e}") from e
        return request

    @staticmethod
    def _patched(current: Obj, request: rendering.Request) -> Obj:
        """`current` with the patch applied (copy-on-write: `current` stays untouched)."""
        content_type = media.content_type(request.headers)
        try:
            if content_type == media.STRATEGIC:
                return strategic_merge(current, request.data)
            return dict(dicts.patch_dict(current, request.data))
        except UnsupportedPatch as e:
            raise _error(415, "UnsupportedMediaType", str(e)) from e
        except Exception as e:  # malformed patches are the client's fault, as in kube-apiserver
            raise _error(400, "BadRequest", f"the patch could not be applied: {e}") from e

    def _check_fields(self, resource: references.resource, request: rendering.Request, obj: Any) -> list[str]:
        """?fieldValidation=: Strict refuses unknown fields (400), Warn (the default) warns of them."""
        directive = request.params.get("fieldValidation") or fieldvalidation.DEFAULT
        if directive not in fieldvalidation.DIRECTIVES:
            raise _error(400, "BadRequest", f'fieldValidation: Unsupported value: "{directive}": '
                         'supported values: "Ignore", "Strict", "Warn"')  # fmt: skip
        if directive == "Ignore" or not isinstance(obj, dict):
            return []
        kind, version = self.resources[resource].kind or "", resource.version or ""
        if resource in self._schemas:
            unknown = fieldvalidation.unknown_custom(obj, self._schemas[resource].schema)
        elif (model := models.builtin_model(resource.group or "", version, kind)) is not None:
            unknown = fieldvalidation.unknown_builtin(obj, model.__name__)
        else:
            return [f"fieldValidation={directive}: the local API server knows no schema of {kind}, "
                    "its fields were not checked"]  # fmt: skip
        if unknown and directive == "Strict":
            raise _error(400, "BadRequest", fieldvalidation.strict_error(kind, version, unknown))
        return fieldvalidation.warnings(unknown)

    @staticmethod
    def _is_apply(request: rendering.Request) -> bool:
        """Server-side apply: a PATCH that creates the object when it is missing. Field ownership
        (managedFields, conflicts, removal of fields a manager dropped) is not emulated."""
        content_type = media.header(request.headers, "Content-Type")
        return request.method.value == "PATCH" and content_type.startswith("application/apply-patch")

    def _known(self, request: rendering.Request) -> references.resource:
        if request.resource is not None and request.resource in self.resources:
            return request.resource
        raise _error(404, "NotFound", f"the server could not find the requested resource {request.resource}")

    def _namespaced(self, resource: references.resource) -> bool:
        return resource in self.resources and bool(self.resources[resource].namespaced)

    # ---- writes --------------------------------------------------------------------------------

    def _create(self, resource: references.resource, request: rendering.Request) -> Obj:
        if not isinstance(request.data, dict):
            raise _error(400, "BadRequest", "the body must be a JSON object")
        obj = copy.deepcopy(request.data)
        meta = obj.setdefault("metadata", {})
        # Server-side apply names the object in the URL.
        if request.name and meta.setdefault("name", request.name) != request.name:
            raise _error(400, "BadRequest", "the name of the object does not match the URL")
        namespace = request.namespace or meta.get("namespace")
        if self._namespaced(resource):
            if request.namespace and meta.get("namespace", request.namespace) != request.namespace:
                raise _error(400, "BadRequest", "the namespace of the object does not match the URL")
            meta["namespace"] = namespace = namespace or "default"
        else:
            namespace = None
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise _error(
                    422,
                    "Invalid",
                    "metadata.name: Required value: name or generateName is required",
                    causes=[{"reason": "FieldValueRequired", "field": "metadata.name"}],
                )
            suffix = "".join(random.choices(string.ascii_lowercase + "2456789", k=5))  # noqa: S311 - not a secret
            meta["name"] = meta["generateName"] + suffix
        key = (resource, namespace, meta["name"])
        if key in self._objects and not self._objects[key].deleted:
            raise _error(
                409,
                "AlreadyExists",
                f'{resource.plural} "{meta["name"]}" already exists',
                name=meta["name"],
                kind=resource.plural,
            )
        if self._has_status(resource):
            obj.pop("status", None)  # the status subresource owns it
        self._admit(resource, obj, None)
        meta.update(uid=str(uuid.uuid4()), generation=1, creationTimestamp=_now())
        for transient in ("resourceVersion", "deletionTimestamp"):
            meta.pop(transient, None)
        if resource == CRDS and not self._dry_run:
            self._register_crd(obj)
        return self._store(key, obj, "ADDED")

    def _update(self, key: Key, current: Obj, new: Obj, request: rendering.Request) -> Obj:
        resource, old_meta = key[0], current["metadata"]
        expected = (new.get("metadata") or {}).get("resourceVersion")
        if expected and expected != old_meta["resourceVersion"]:
            raise _error(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {resource.plural} "{key[2]}": '
                "the object has been modified; please apply your changes to the latest version "
                "and try again",
                name=key[2],
                kind=resource.plural,
            )
        if self._has_status(resource):
            if request.subresource == "status":  # only status changes through /status
                new = {**current, "status": new.get("status")}
            else:
                new = {**new, "status": current.get("status")}
        new = copy.deepcopy({k: v for k, v in new.items() if v is not None})
        meta = new.setdefault("metadata", {})
        for field in (
            "uid",
            "name",
            "namespace",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "resourceVersion",
        ):  # owned by the server
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        self._admit(resource, new, request.subresource, old=current)
        if new == current:
            return current  # a no-op write bumps nothing and notifies no one, as in kube-apiserver
        if {k: v for k, v in new.items() if k not in ("metadata", "status")} != {
            k: v for k, v in current.items() if k not in ("metadata", "status")
        }:
            meta["generation"] = old_meta.get("generation", 1) + 1
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(key, new, "Background")
        return self._store(key, new, "MODIFIED")

    def _delete(self, key: Key, policy: str) -> Obj:
        current = self._get(key)
        meta = current["metadata"]
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return current
            new = copy.deepcopy(current)
            new["metadata"]["deletionTimestamp"] = _now()
            return self._store(key, new, "MODIFIED")
        return self._remove(key, current, policy)

    def _remove(self, key: Key, obj: Obj, policy: str) -> Obj:
        if self._dry_run:
            return obj
        self._revision += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self._revision)
        self._objects[key].delete()
        self._emit(key[0], "DELETED", obj)
        if key[0] == CRDS:
            self._unregister_crd(obj)
        self._collect_dependents(obj["metadata"]["uid"], policy)
        return obj

    def _collect_dependents(self, owner_uid: str, policy: str) -> None:
        """The garbage collector: dependents with no live owner left are deleted (or orphaned)."""
        objects = self._live()
        live = {o["metadata"]["uid"] for o in objects.values()}
        for key, obj in objects.items():
            refs = obj["metadata"].get("ownerReferences") or []
            if not any(ref.get("uid") == owner_uid for ref in refs):
                continue
            if policy == "Orphan":
                new = copy.deepcopy(obj)
                new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != owner_uid]
                self._store(key, new, "MODIFIED")
            elif not any(ref.get("uid") in live for ref in refs) and not self._objects[key].deleted:
                self._delete(key, "Background")

    def _store(self, key: Key, obj: Obj, event: str) -> Obj:
        if self._dry_run:
            return obj
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        if key in self._objects:
            self._objects[key].create(obj)  # a new version in kmock's history
        else:
            self._objects[key] = obj
        self._emit(key[0], event, obj)
        return obj

    def _emit(self, resource: references.resource, event: str, obj: Obj) -> None:
        history = self._history[resource]
        if len(history) == history.maxlen:
            self._floor[resource] = history[0][0]
        # No copy: a stored version is never mutated (every write stores a fresh copy).
        message = {"type": event, "object": obj}
        history.append((self._revision, message))
        for queue in self._watchers[resource]:
            queue.put_nowait(message)

    async def inject(self, resource: references.resource, obj: Obj) -> Obj:
        """Store an object as-is, skipping admission, as if written under an older schema: lets
        tests feed the operator what the current CRD would reject."""
        async with self._lock:
            obj = copy.deepcopy(obj)
            meta = obj["metadata"]
            meta.update(uid=str(uuid.uuid4()), generation=1, creationTimestamp=_now())
            return self._store((resource, meta.get("namespace"), meta["name"]), obj, "ADDED")

    # ---- admission and CRDs --------------------------------------------------------------------

    def _has_status(self, resource: references.resource) -> bool:
        return resource in self.resources and "status" in self.resources[resource].subresources

    def _admit(
        self, resource: references.resource, obj: Obj, subresource: str | None, old: Obj | None = None
    ) -> None:
        schema = self._schemas.get(resource)
        if schema is None:
            return
        causes = schema.admit(obj, root="status" if subresource == "status" else None, old=old)
        if causes:
            kind = self.resources[resource].kind
            name = obj.get("metadata", {}).get("name", "")
            text = "; ".join(f"{c['field']}: {c['message']}" for c in causes)
            raise _error(
                422,
                "Invalid",
                f'{kind}.{resource.group} "{name}" is invalid: {text}',
                name=name,
                group=resource.group,
                kind=kind,
                causes=causes,
            )

    def _register_crd(self, crd: Obj) -> None:
        spec = crd["spec"]
        names = spec["names"]
        for version in spec["versions"]:
            resource = references.resource(
                group=spec["group"], version=version["name"], plural=names["plural"]
            )
            self.resources[resource] = references.ResourceInfo(
                namespaced=spec.get("scope") == "Namespaced",
                kind=names["kind"],
                singular=names.get("singular", names["kind"].lower()),
                verbs=["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                shortnames=names.get("shortNames", []),
                categories=names.get("categories", []),
                subresources=list(version.get("subresources") or {}),
            )
            self._schemas[resource] = StructuralSchema(version["schema"]["openAPIV3Schema"])
            self._columns[resource] = tables.crd_columns(version)
        crd["status"] = {
            "acceptedNames": names,
            "conditions": [
                {"type": t, "status": "True", "reason": r, "message": "", "lastTransitionTime": _now()}
                for t, r in (("NamesAccepted", "NoConflicts"), ("Established", "InitialNamesAccepted"))
            ],
        }

    def _unregister_crd(self, crd: Obj) -> None:
        spec = crd["spec"]
        for version in spec["versions"]:
            resource = references.resource(
                group=spec["group"], version=version["name"], plural=spec["names"]["plural"]
            )
            for key in [k for k in self._live() if k[0] == resource]:
                self._remove(key, self._objects[key].raw, "Background")
            self._schemas.pop(resource, None)
            self._columns.pop(resource, None)
            del self.resources[resource]

    # ---- reads ---------------------------------------------------------------------------------

    def _live(self) -> dict[Key, Obj]:
        return {key: obj.raw for key, obj in self._objects.items() if not obj.deleted}

    def _get(self, key: Key) -> Obj:
        if key not in self._objects or self._objects[key].deleted:
            raise _error(
                404, "NotFound", f'{key[0].plural} "{key[2]}" not found', name=key[2], kind=key[0].plural
            )
        return self._objects[key].raw

    def _matcher(self, request: rendering.Request) -> Any:
        try:
            labels = label_selector(request.params.get("labelSelector"))
            resource = request.resource or references.resource()
            fields = kind_field_selector(
                request.params.get("fieldSelector"), resource.group or "", resource.plural or ""
            )
        except SelectorError as e:
            raise _error(400, "BadRequest", str(e)) from e

        def matches(obj: Obj) -> bool:
            in_namespace = request.namespace is None or obj["metadata"].get("namespace") == request.namespace
            return in_namespace and labels(obj) and fields(obj)

        return matches

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        async with self._lock:
            return self._get((self._known(request), request.namespace, request.name or ""))

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        resource = self._known(request)
        matches = self._matcher(request)
        async with self._lock:
            items = [obj for key, obj in self._live().items() if key[0] == resource and matches(obj)]
            revision = self._revision
        kind = self.resources[resource].kind if resource in self.resources else None
        return {
            "apiVersion": f"{resource.group}/{resource.version}".lstrip("/"),
            "kind": f"{kind}List" if kind else "List",
            "metadata": {"resourceVersion": str(revision)},
            "items": sorted(items, key=lambda o: int(o["metadata"]["resourceVersion"])),
        }

    def _initial_events_end(self, resource: references.resource) -> Obj:
        return {
            "kind": self.resources[resource].kind,
            "apiVersion": f"{resource.group}/{resource.version}".lstrip("/"),
            "metadata": {
                "resourceVersion": str(self._revision),
                "annotations": {"k8s.io/initial-events-end": "true"},
            },
        }

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        resource = self._known(request)
        matches = self._matcher(request)
        yield b""  # send the headers now: a watch may stay silent for long
        since = int(request.params.get("resourceVersion") or 0)
        initial = request.params.get("sendInitialEvents") == "true"  # a streaming list (WatchList)
        timeout = float(request.params.get("timeoutSeconds") or 0) or None
        queue: asyncio.Queue[Obj] = asyncio.Queue()
        async with self._lock:
            if since and not initial and since < self._floor.get(resource, 0):
                gone = {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "code": 410,
                    "reason": "Expired",
                    "message": f"too old resource version: {since}",
                }
                backlog = [{"type": "ERROR", "object": gone}]
            elif since and not initial:
                backlog = [msg for rev, msg in self._history[resource] if rev > since]
            else:
                backlog = [
                    {"type": "ADDED", "object": o} for k, o in self._live().items() if k[0] == resource
                ]
            if initial:  # the initial state ends with a bookmark saying so (client-go's WatchList)
                backlog.append({"type": "BOOKMARK", "object": self._initial_events_end(resource)})
            self._watchers[resource].add(queue)
        try:
            for message in backlog:
                if message["type"] == "ERROR":
                    yield message
                    return
                if message["type"] == "BOOKMARK" or matches(message["object"]):
                    yield message
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout if timeout else None
            while True:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return
                try:
                    message = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    return
                if matches(message["object"]):
                    yield message
        finally:
            self._watchers[resource].discard(queue)
