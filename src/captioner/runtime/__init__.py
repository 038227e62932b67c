"""Fast inference runtimes of a trained model: the fused decoder and the ONNX Runtime twins."""
