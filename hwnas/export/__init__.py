"""Export: ONNX (fp32 / QDQ int8 / mixed) and TFLite (fp32 / fp16 / int8 / mixed) writers that
work from :class:`hwnas.quant.graph.Graph`, and their verification (``hwnas export``)."""
