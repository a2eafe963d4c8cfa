"""One thin kopf handler module per kind; importing this package registers them all."""

from vlmop.operator.handlers import cascaderljob, children, dvddeployment, pretrainjob

__all__ = ["cascaderljob", "children", "dvddeployment", "pretrainjob"]
