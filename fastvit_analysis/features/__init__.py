"""Feature-map analyses: latent extraction, Fourier, variance, mini-batch CKA, frequency-noise robustness."""
