"""Alignment: TweakReg-style source finding, offset matching, linear fits in a
common tangent plane and the WCS update that carries the fit into the chips.

The algorithms live in plain-array modules (``sources``, ``masks``,
``matching``, ``fitting``, ``wcs_update``, ``reports``); the recipe steps
``find_sources`` and ``align`` (``steps.align.steps``) wire them to products.
"""
