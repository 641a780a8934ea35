"""Quantization: PT2E quantizer configs, PTQ calibration observers, QAT."""
