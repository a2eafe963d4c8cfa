"""Typed models of the vlmop resources: the single source of truth for CRDs, handlers and builders."""

from vlmop.operator.api.cascaderljob import CASCADERLJOB, CascadeRLJobSpec, CascadeRLJobStatus
from vlmop.operator.api.common import API_VERSION, GROUP, VERSION, Condition, KindInfo
from vlmop.operator.api.dvddeployment import DVDDEPLOYMENT, DvDDeploymentSpec, DvDDeploymentStatus
from vlmop.operator.api.pretrainjob import PRETRAINJOB, PretrainJobSpec, PretrainJobStatus

KINDS: tuple[KindInfo, ...] = (PRETRAINJOB, CASCADERLJOB, DVDDEPLOYMENT)

__all__ = [
    "API_VERSION",
    "CASCADERLJOB",
    "DVDDEPLOYMENT",
    "GROUP",
    "KINDS",
    "PRETRAINJOB",
    "VERSION",
    "CascadeRLJobSpec",
    "CascadeRLJobStatus",
    "Condition",
    "DvDDeploymentSpec",
    "DvDDeploymentStatus",
    "KindInfo",
    "PretrainJobSpec",
    "PretrainJobStatus",
]
