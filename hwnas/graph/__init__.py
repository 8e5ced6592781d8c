"""The graph every writer consumes: ops, shapes, per-layer precision, quantization parameters.

Below ``quant/``, ``export/`` and ``lut/``, which all speak it:

* ``nodes``: the BN-folded inference graph (numpy arrays; torch-free);
* ``qparams``: per-layer bits, which tensors are integer and on which grid, and
  :class:`~hwnas.graph.qparams.QuantState` (a graph with its quantization parameters) — what
  ``quant/`` produces and the writers in ``export/`` turn into bytes (torch-free);
* ``blocks``: the block spec a graph layer is timed as, and the model formats and precisions a
  graph can be written at (torch-free);
* ``lower``: lowering a torch module (or a block spec, or a whole network of specs) into a graph.

Importing this package imports nothing heavy.
"""
