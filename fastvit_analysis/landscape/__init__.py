"""Loss landscapes: filter-normalised directions, batched grid evaluation, interpolation and trajectories.

- :mod:`.directions`: ``filter_normalized_directions`` (Li et al. "filter" and the paper's "axis0").
- :mod:`.grid`: ``loss_landscape`` and ``LandscapeResult`` (vmapped, resumable, torchrun-sharded).
- :mod:`.trajectory`: ``interpolate`` between two models, ``trajectory`` of checkpoints on a PCA plane.
- figures (contour, 3-D surface, 1-D curves, trajectory overlays): :mod:`fastvit_analysis.plot.landscape`.
"""
