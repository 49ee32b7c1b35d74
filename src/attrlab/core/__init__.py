"""The bottom layer: checks, the registry, model-safety hooks, backward rules and the
perturbation engine. Nothing in ``core`` imports another attrlab package."""
