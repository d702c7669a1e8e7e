"""Trace-driven DRAM-traffic counter of the dataflows (``docs/traffic.md``).

``DATAFLOWS`` lists them in report order; :func:`run_study` counts them all on one
workload, :func:`sweep` varies the slicing.
"""

from defslice.model.traffic.base import SCOPES, Dataflow, TrafficContext
from defslice.model.traffic.compulsory import Compulsory
from defslice.model.traffic.counter import TrafficCount, region_bursts
from defslice.model.traffic.dcn import DeformableConvStyle
from defslice.model.traffic.defa import DefaStyle
from defslice.model.traffic.layer_by_layer import LayerByLayer, LayerByLayerPerOperator
from defslice.model.traffic.layer_graph import LayerGraph
from defslice.model.traffic.schedule import Schedule, ScheduledDataflow
from defslice.model.traffic.sliced import HaloReuse, Sliced
from defslice.model.traffic.study import DATAFLOWS, run_study
from defslice.model.traffic.sweep import sweep
from defslice.model.traffic.trace import SamplingTrace

__all__ = [
    "DATAFLOWS",
    "SCOPES",
    "Compulsory",
    "Dataflow",
    "DefaStyle",
    "DeformableConvStyle",
    "HaloReuse",
    "LayerByLayer",
    "LayerByLayerPerOperator",
    "LayerGraph",
    "SamplingTrace",
    "Schedule",
    "ScheduledDataflow",
    "Sliced",
    "TrafficContext",
    "TrafficCount",
    "region_bursts",
    "run_study",
    "sweep",
]
