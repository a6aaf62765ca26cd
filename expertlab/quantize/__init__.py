"""Weight-only post-training quantization of (pruned) checkpoints: GPTQ and round-to-nearest."""
