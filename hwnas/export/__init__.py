"""Export: ONNX (fp32 / QDQ int8 / mixed) and TFLite (fp32 / fp16 / int8 / mixed) writers that
work from :class:`hwnas.graph.nodes.Graph`, and their verification (``hwnas export``)."""
