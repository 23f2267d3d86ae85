"""Loss landscapes: filter-normalised directions, batched grid evaluation, interpolation and trajectories."""
