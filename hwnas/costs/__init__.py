"""Cost models for the search: the exact cost of a discrete architecture and a differentiable
expected cost under the architecture parameters, for FLOPs, parameters and latency.

* ``hwnas.costs.tables``: additive tables (:class:`ChoiceTable`, :class:`ChannelTable`).
* ``hwnas.costs.models``: :class:`CostModel`, :class:`Constraint`, the ``COST_MODELS`` registry.
* ``hwnas.costs.latency``: device name / LUT file -> latency predictor.

Importing this package does not import torch.
"""

from __future__ import annotations
