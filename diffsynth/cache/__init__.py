"""The encoder cache: encode every sample once (VAE latents, text embeddings), then train the
denoiser from the cache without loading an encoder. See `diffsynth.cache.stage`."""
