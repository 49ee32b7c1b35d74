"""Learned explainers (L2X and the amortised explainers of paper 05): fitted with
:meth:`attrlab.methods.base.Attribution.fit`.

Home of the next family; no method is registered here yet.
"""
