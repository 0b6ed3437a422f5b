"""Dataset loaders: annotations to :class:`evalkit.types.GroundTruth`."""
