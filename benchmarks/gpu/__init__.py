"""GPU benchmarks (figure 6): real-size DiT architectures, random weights. CUDA only."""
