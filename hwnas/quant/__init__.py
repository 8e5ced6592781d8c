"""Quantization: fake quantizers, calibration, QAT, and mixed-precision search (HAQ, DFQ and their
baselines) under a latency or a model-size budget: it produces quantization parameters
(:class:`hwnas.graph.qparams.QuantState`, :class:`hwnas.graph.wcodes.WeightCode`) and never sees
a device.

Modules (one algorithm each): ``quantizers``/``calibrate``/``qnet``/``qat`` (the fake-quantized
PyTorch model of a :mod:`hwnas.graph` graph), ``costs``/``profile`` (the latency of a policy, from
per-precision measurements the run layer made on the device), ``haq_env``/``ddpg``/``haq`` (HAQ,
Wang et al. CVPR 2019), ``dfq``/``dfq_relax``/``dfq_act``/``dfq_budget`` (DFQ, Cheng et al. 2018),
``baselines`` (random, greedy sensitivity, uniform), ``latency`` and ``size`` (each mode's methods
on one shared problem), ``coded`` (size mode's low-bit weights), ``quantize`` (data and the
latency-mode evaluator), ``policy`` (files). The command ``hwnas quantize`` is
:mod:`hwnas.runs.quantize`. Importing this package imports nothing heavy.
"""
