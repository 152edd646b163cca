"""The device lab: measure devices attached to many hosts through one Ray cluster.

Each device is a Ray custom resource ``edgeship-device:<name>`` (capacity 1) of the node it
is attached to, advertised by ``edgeship worker`` after ``devices check`` passed there. The
submitting process (``profile``/``gate --cluster``) sends one task per device carrying all
its artifacts, so the rounds interleave across the artifacts on the device as they do
in-process (edgeship.measure.profile.measure_rounds) and the device is held for the whole run:
nobody else's task can slip a measurement between two rounds. Two submissions that name the
same device queue on its resource, never overlap.

Modules: ``connect`` (the lazy Ray import), ``transport`` (artifacts by content),
``task`` (what runs on the node), ``submit`` (fan out, collect, write), ``worker`` (join a
node). Nothing here is imported unless a cluster is configured.
"""

from __future__ import annotations

RESOURCE_PREFIX = "edgeship-device:"
# set by `edgeship worker` in the environment of `ray start`; Ray's worker processes on that
# node inherit it, so a task finds the node's own edgeship.toml (its ssh keys, its adb serials)
NODE_CONFIG_ENV = "EDGESHIP_NODE_CONFIG"


def device_resource(device: str) -> str:
    return f"{RESOURCE_PREFIX}{device}"
