"""A vector probe read by a convolutional model at chosen spatial positions (`pos=` selector).

The samples of a CNN site are channel vectors at positions of its feature maps (see
`polyaudit.models.conv`). With one position per image (`pos=center`, `pos=I,J`) each image stays one
sample; with `pos=all` each image gives G samples, one per position of the grid, so the probe keeps
(image, grid position) pairs like a text probe keeps (sequence, position) pairs: labels repeat per
position and bootstrap resamples whole images (`groups`). The probe's name carries the selector
(`digits@pos=all`), so caches and reports never mix activations read at different positions.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from polyaudit.probes.base import ProbeSet


def at_positions(probe: ProbeSet, selector: str, per_input: int) -> ProbeSet:
    """`probe` as read at `per_input` positions per input by a model whose selector is `selector`."""
    if probe.kind != "vectors" or probe.positions is not None:
        return probe
    name = f"{probe.name}@pos={selector}"
    meta = {**probe.meta, "pos": selector, "positions_per_input": per_input}
    if per_input == 1:
        return dataclasses.replace(probe, name=name, meta=meta)
    n = int(probe.inputs.shape[0])
    positions = np.stack([np.repeat(np.arange(n), per_input), np.tile(np.arange(per_input), n)], axis=1)
    labels = None if probe.labels is None else np.repeat(np.asarray(probe.labels), per_input)
    return dataclasses.replace(probe, name=name, meta=meta, positions=positions.astype(np.int64), labels=labels)
