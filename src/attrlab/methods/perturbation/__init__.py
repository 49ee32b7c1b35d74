"""Perturbation methods (occlusion, RISE, LIME, KernelSHAP, Meaningful/Extremal Perturbation).

Home of the next family: its members build on :mod:`attrlab.core.perturbation`, the engine the
perturbation metrics already use. No method is registered here yet.
"""
