"""Localisation metrics (EHR, pointing game, energy-based pointing game): scores against
per-sample ground truth (boxes, masks) carried with the batch.

Home of the next category; no metric is registered here yet.
"""
