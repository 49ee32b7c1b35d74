"""Experiments built from methods, metrics, data and models: the bench runner and its store, the
HTML report, training, remove-and-retrain (ROAR), ``explain`` figures and one module per paper
reproduction (:mod:`attrlab.experiments.reproduce`)."""
